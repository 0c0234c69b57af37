"""Where the scoring report's base map comes from: a tile server, or a local PMTiles archive.

* A tile server: a URL template with ``{z}``, ``{x}`` and ``{y}`` (as OpenStreetMap-style
  servers take). The page names each tile; the browser fetches them when the page is opened.
* A PMTiles archive (one file of raster map tiles, https://docs.protomaps.com/pmtiles/): the
  tiles the map's view needs are read when the report is written and embedded in the page as
  ``data:`` images, so the page stays one file that needs no network at all.

Every way an archive cannot serve (not a PMTiles v3 file, vector tiles, a compression a browser
cannot show) is refused by :meth:`BaseMap.open` before scoring starts, with one sentence.

It knows tiles only: not the report's layout, stores nor customers.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from pathlib import Path

from .errors import InvalidInput

__all__ = ["BaseMap"]

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "AVIF": "image/avif"}


class BaseMap:
    """The tiles of a report's base map; build with :meth:`open`."""

    def __init__(self, *, url: str | None = None, archive: Path | None = None):
        self.url, self.archive = url, archive
        self.min_zoom, self.max_zoom = 0, 19
        self._reader = self._mime = None
        self._gzip = False
        if archive is not None:
            self._open_archive(archive)

    @classmethod
    def open(cls, tile_url: str | None, pmtiles: Path | None) -> BaseMap | None:
        """The base map the options name (None without one), checked now: a bad one fails the
        run before anything is written (:class:`InvalidInput`, one sentence)."""
        if tile_url is not None and pmtiles is not None:
            raise InvalidInput("give either --tile-url or --pmtiles for the report's base map, not both")
        if tile_url is not None:
            if not all(k in tile_url for k in ("{z}", "{x}", "{y}")):
                raise InvalidInput(f"--tile-url {tile_url!r} needs {{z}}, {{x}} and {{y}} where the "
                                   "tile's zoom and numbers go, like http://host/tile/{z}/{x}/{y}.png")
            return cls(url=tile_url)
        if pmtiles is not None:
            return cls(archive=Path(pmtiles))
        return None

    def _open_archive(self, path: Path) -> None:
        from pmtiles.reader import MmapSource, Reader
        from pmtiles.tile import Compression, MagicNumberNotFound, SpecVersionUnsupported

        where = f"--pmtiles {path}"
        try:
            self._file = path.open("rb")  # mapped, not read: an archive can be the whole planet
            reader = Reader(MmapSource(self._file))
        except FileNotFoundError:
            raise InvalidInput(f"{where}: no such file") from None
        except IsADirectoryError:
            raise InvalidInput(f"{where} is a folder, not a PMTiles file") from None
        except ValueError:  # mmap of an empty file
            raise InvalidInput(f"{where} is empty, not a PMTiles archive") from None
        except OSError as e:
            raise InvalidInput(f"{where}: cannot be read ({e.strerror or e})") from None
        try:
            header = reader.header()
        except (MagicNumberNotFound, UnicodeDecodeError, IndexError):
            raise InvalidInput(f"{where} is not a PMTiles archive (it does not start with 'PMTiles')") \
                from None
        except SpecVersionUnsupported:
            raise InvalidInput(f"{where} is an older PMTiles version; convert it to version 3 "
                               "(pmtiles convert)") from None
        except ValueError as e:  # an unknown compression or tile type number
            raise InvalidInput(f"{where} has a header this reader does not know ({e})") from None
        kind = header["tile_type"].name
        if kind not in _MIME:
            raise InvalidInput(f"{where} holds {kind} tiles; the report embeds raster tiles only "
                               "(PNG, JPEG, WebP or AVIF): use a raster archive")
        if header["internal_compression"] != Compression.GZIP:
            raise InvalidInput(f"{where}: its directories are compressed with "
                               f"{header['internal_compression'].name}; this reader needs GZIP")
        if header["tile_compression"] not in (Compression.NONE, Compression.GZIP, Compression.UNKNOWN):
            raise InvalidInput(f"{where}: its tiles are compressed with {header['tile_compression'].name}, "
                               "which a browser cannot show; use an archive of plain image tiles")
        self._reader, self._mime = reader, _MIME[kind]
        self._gzip = header["tile_compression"] == Compression.GZIP
        self.min_zoom, self.max_zoom = int(header["min_zoom"]), int(header["max_zoom"])

    def href(self, z: int, x: int, y: int) -> str | None:
        """What an ``<image>`` of tile ``z/x/y`` points at: the server's URL, or the archive's
        tile as a ``data:`` URL (None when the archive has no such tile)."""
        if self.url is not None:
            return self.url.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
        try:
            tile = self._reader.get(z, x, y)
        except (OSError, EOFError, ValueError, IndexError, zlib.error):
            return None  # a damaged directory: that tile is left out, the map still draws
        if not tile:
            return None
        tile = bytes(tile)
        if self._gzip:
            try:
                tile = gzip.decompress(tile)
            except (OSError, EOFError, zlib.error):
                return None
        return f"data:{self._mime};base64,{base64.b64encode(tile).decode('ascii')}"

    @property
    def credit(self) -> str:
        """Where the tiles came from, for the page's footnote."""
        return f"tiles from {self.url}" if self.url is not None else \
            f"tiles from {self.archive.name} (embedded)"
