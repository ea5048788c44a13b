"""Images as Label Studio hands them to an ML backend: its own URLs (uploads, local files) with a token,
``s3://`` keys of a connected bucket, and plain http(s).

Label Studio sends a task's ``data.image`` as the annotator's browser sees it: ``/data/upload/…``
and ``/data/local-files/?d=…`` are relative to the server and need its API token; a bucket
connected as source storage leaves ``s3://bucket/key``, which the backend reads with its own
credentials. The token is a legacy one (``Authorization: Token …``) or a personal access token
(a JWT refresh token, exchanged at ``/api/token/refresh`` for a short-lived ``Bearer`` token).
Every failure names the URL and the reason, and maps to the HTTP status the backend answers with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlparse

import numpy as np

from dataset_pipeline.images import decode_image


class ImageFetchError(RuntimeError):
    """An image could not be read; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ImageFetcher:
    """Reads the images of Label Studio tasks."""

    label_studio_url: str | None = None
    token: str | None = field(default=None, repr=False)
    s3_endpoint_url: str | None = None
    timeout_s: float = 30.0
    _access: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def configure(self, label_studio_url: str | None, token: str | None) -> None:
        """Take the server and token Label Studio sends in ``/setup`` where none were configured."""
        with self._lock:
            if label_studio_url and not self.label_studio_url:
                self.label_studio_url = label_studio_url
            if token and not self.token:
                self.token = token

    def read_bytes(self, url: str) -> bytes:
        if not isinstance(url, str) or not url:
            raise ImageFetchError(400, f"the task's image URL is missing or not a string ({url!r})")
        scheme = urlparse(url).scheme
        if scheme == "s3":
            return self._read_s3(url)
        if scheme in ("http", "https"):
            return self._get(url, with_token=self._is_label_studio(url))
        if scheme == "" and url.startswith("/"):
            if not self.label_studio_url:
                raise ImageFetchError(
                    400,
                    f"image {url!r} is a Label Studio path, but the backend knows no Label Studio URL "
                    "(--label-studio-url or LABEL_STUDIO_URL)",
                )
            return self._get(
                urljoin(self.label_studio_url.rstrip("/") + "/", url.lstrip("/")), with_token=True
            )
        raise ImageFetchError(
            400,
            f"image URL {url!r}: scheme {scheme or 'none'!r} is not read (use http(s), s3 or a Label Studio path)",
        )

    def read(self, url: str) -> np.ndarray:
        """The image at ``url`` as RGB uint8."""
        data = self.read_bytes(url)
        try:
            rgb = decode_image(data, url).rgb
        except ValueError as exc:
            raise ImageFetchError(422, str(exc)) from None
        return rgb if rgb.flags.writeable else rgb.copy()  # torch wants writable arrays

    def _is_label_studio(self, url: str) -> bool:
        if not self.label_studio_url:
            return False
        ours, theirs = urlparse(self.label_studio_url), urlparse(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)

    def _authorization(self, refresh: bool = False) -> dict[str, str]:
        if not self.token:
            return {}
        if self.token.count(".") != 2:  # a legacy token
            return {"Authorization": f"Token {self.token}"}
        with self._lock:
            if self._access is None or refresh:
                self._access = self._exchange(self.token)
            return {"Authorization": f"Bearer {self._access}"}

    def _exchange(self, refresh_token: str) -> str:
        import requests

        assert self.label_studio_url
        url = self.label_studio_url.rstrip("/") + "/api/token/refresh"
        try:
            response = requests.post(url, json={"refresh": refresh_token}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise ImageFetchError(
                502, f"Label Studio at {self.label_studio_url} is unreachable ({exc})"
            ) from None
        if response.status_code != 200:
            raise ImageFetchError(
                502,
                f"Label Studio refused the personal access token (HTTP {response.status_code} from "
                "/api/token/refresh): set a valid --label-studio-token / LABEL_STUDIO_API_KEY",
            )
        return str(response.json()["access"])

    def _get(self, url: str, with_token: bool) -> bytes:
        import requests

        for attempt in (0, 1):
            headers = self._authorization(refresh=attempt == 1) if with_token else {}
            if with_token and not headers:
                raise ImageFetchError(
                    502,
                    f"image {url} is served by Label Studio, but the backend has no token "
                    "(--label-studio-token or LABEL_STUDIO_API_KEY)",
                )
            try:
                response = requests.get(url, headers=headers, timeout=self.timeout_s)
            except requests.RequestException as exc:
                raise ImageFetchError(
                    502, f"image {url} is unreachable ({type(exc).__name__}: {exc})"
                ) from None
            if (
                response.status_code == 401
                and with_token
                and attempt == 0
                and self.token
                and self.token.count(".") == 2
            ):
                continue  # an expired access token: exchange the refresh token once more
            break
        if response.status_code in (401, 403):
            raise ImageFetchError(
                502,
                f"Label Studio refused the token for image {url} (HTTP {response.status_code}): set a valid "
                "--label-studio-token / LABEL_STUDIO_API_KEY (Account & Settings → Access Token)",
            )
        if response.status_code != 200:
            raise ImageFetchError(502, f"image {url}: HTTP {response.status_code} {response.reason}")
        return response.content

    def _read_s3(self, url: str) -> bytes:
        import s3fs

        try:
            client_kwargs = {"endpoint_url": self.s3_endpoint_url} if self.s3_endpoint_url else {}
            filesystem = s3fs.S3FileSystem(client_kwargs=client_kwargs)
            with filesystem.open(url[len("s3://") :], "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise ImageFetchError(404, f"image {url}: no such object") from None
        except PermissionError as exc:
            raise ImageFetchError(502, f"image {url}: access denied ({exc})") from None
        except OSError as exc:
            raise ImageFetchError(502, f"image {url}: S3 read failed ({exc})") from None
