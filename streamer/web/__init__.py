"""The web page `ser-serve` serves at `/` (plain HTML/CSS/JavaScript, no build step): files of
this package, read once at import."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# the page talks to its own server only: scripts, styles and sockets from the same origin
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
    "media-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _pages() -> dict[str, tuple[bytes, str]]:
    """URL path -> (body, content type)."""
    pages = {"/": ((_HERE / "index.html").read_bytes(), _TYPES[".html"])}
    for name in ("app.js", "worklet.js", "style.css"):
        path = _HERE / name
        pages[f"/static/{name}"] = (path.read_bytes(), _TYPES[path.suffix])
    pages["/index.html"] = pages["/"]
    pages["/favicon.ico"] = (b"", "image/x-icon")  # none: said without a 404
    return pages


PAGES = _pages()
