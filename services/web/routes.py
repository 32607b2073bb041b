"""The web app, served by the API itself: the family app at ``/``, the caregiver page at
``/care``, their static files under ``/static/`` (Leaflet from the xstatic-leaflet package under
``/static/leaflet/``) and the little configuration they read, ``/app-config.json``.

Nothing here needs a login: the pages hold no data. The app logs in through ``/v1/auth/login``
and reads everything else from the API with the person's own token. None of these routes is in
the OpenAPI description: they are not part of the API.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import xstatic.pkg.leaflet as leaflet
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

STATIC_DIR = Path(__file__).with_name("static")
LEAFLET_DIR = Path(leaflet.BASE_DIR)

router = APIRouter(include_in_schema=False)


def tile_source(tile_url: str) -> str:
    """The CSP source that lets the map load tiles from ``tile_url`` ('' when there are none):
    Leaflet's ``{s}`` subdomain placeholder becomes a ``*.`` wildcard."""
    if not tile_url:
        return ""
    parts = urlsplit(tile_url.replace("{s}", "*"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def page_headers(tile_url: str) -> dict[str, str]:
    """The pages load only our own scripts, talk only to our own API, and tell a tile server
    nothing about the page a family has open (no referrer)."""
    images = " ".join(s for s in ("'self'", "data:", tile_source(tile_url)) if s)
    return {
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; connect-src 'self';"
            f" img-src {images}; style-src 'self' 'unsafe-inline'; object-src 'none';"
            " base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }


def _page(request: Request, name: str) -> FileResponse:
    settings = request.app.state.settings
    return FileResponse(
        STATIC_DIR / name, media_type="text/html", headers=page_headers(settings.map_tile_url)
    )


@router.get("/")
async def family_app(request: Request) -> FileResponse:
    return _page(request, "index.html")


@router.get("/care")
async def care_page(request: Request) -> FileResponse:
    return _page(request, "care.html")


@router.get("/app-config.json")
async def app_config(request: Request) -> JSONResponse:
    """What the app needs to know about this deployment (no secrets)."""
    settings = request.app.state.settings
    return JSONResponse(
        {"map_tile_url": settings.map_tile_url}, headers={"Cache-Control": "no-cache"}
    )


def _file(root: Path, path: str) -> FileResponse:
    """A file below ``root``, never outside it (``..``, absolute paths and links refused)."""
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        raise HTTPException(status_code=404, detail="no such file")
    return FileResponse(target, headers={"Cache-Control": "no-cache", "X-Content-Type-Options":
                                         "nosniff"})  # fmt: skip


@router.get("/static/leaflet/{path:path}")
async def leaflet_file(path: str) -> FileResponse:
    return _file(LEAFLET_DIR, path)


@router.get("/static/{path:path}")
async def static_file(path: str) -> FileResponse:
    return _file(STATIC_DIR, path)
