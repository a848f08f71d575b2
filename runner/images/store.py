"""The on-disk OCI image store: blobs, tags, unpacked layers, garbage collection.

Layout under the store root::

    blobs/sha256/<hex>     manifests, configs and layer blobs, named by their digest
    tags.json              {"docker.io/library/debian:bookworm": "sha256:<manifest digest>"}
    layers/<hex>/          a layer unpacked for overlayfs, named by its diff_id (shared by images)
    tmp/                   blobs and layers being written; never read
    store.lock, gc.lock    file locks

Owners: a store opened for an owner (`ImageStore(root, owner="repo:42")`, see `runner.owners`) is
what the pipelines of that repository see. The tags they write go to the owner's namespace, stored
as `kapal.invalid/<owner slug>/<registry>/<repository>:<tag>`, so a build tagged `debian:bookworm`
never replaces the base image every other repository uses; the names they look up resolve to the
owner's own build first, then to the base images (tags outside any namespace: bootstrapped,
pulled, imported by the operator), which pipelines can read but never write. Other owners'
namespaces are invisible to them. A store opened without an owner (the operator's `kapal image`
and `kapal build`) sees and writes every tag.

Concurrency: blobs and unpacked layers appear by atomic rename only after they are complete and
verified, so readers never see half-written content. `tags.json` is rewritten (temp file + rename)
under `store.lock`. Every writer holds `gc.lock` shared for as long as it has blobs that nothing
references yet (`with store.session():`); `gc()` takes it exclusively, so it never deletes what a
concurrent import, pull or build is about to commit. `gc()` also keeps every unpacked layer that a
mounted overlay uses (read from /proc/self/mountinfo); a runtime that unpacks and then mounts does
both inside one `session()` so no gc can slip in between.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.records import record
from runner.errors import (
    ArchiveError,
    CorruptBlobError,
    ImageError,
    ImageNotFoundError,
    ImageReferenceError,
    StoreFullError,
)
from runner.images import mediatypes as mt
from runner.images.blobs import BlobStore, space_checked
from runner.images.image import Image, LayerDescriptor
from runner.images.platforms import pick_platform
from runner.images.reference import Reference
from runner.owners import owner_slug

if TYPE_CHECKING:
    from filelock import FileLock

# Writing (`tempfile`) and unpacking (`runner.images.layers`, with tarfile) are imported where
# they happen: reading an image, what `kapal exec` does, needs neither (issue 11).

# the registry part of namespaced tags: a reserved name that never resolves, so nothing is pulled
NAMESPACE_REGISTRY = "kapal.invalid"


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes for a manifest or config kapal writes (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@record
class GcReport:
    """What `ImageStore.gc()` removed."""

    blobs: int
    layers: int
    bytes_freed: int


@record
class TaggedImage:
    """A tag in the store and the image it points to."""

    reference: Reference
    image: Image


class TagRefusedError(ImageError):
    """A pipeline asked for a tag it may not write (one in kapal's reserved namespace)."""


def namespace_prefix(owner: str) -> str:
    """The beginning of every tag key in `owner`'s namespace."""
    return f"{NAMESPACE_REGISTRY}/{owner_slug(owner)}/"


def _in_namespace(key: str) -> bool:
    return key.startswith(NAMESPACE_REGISTRY + "/")


def _namespaced_path(reference: Reference) -> str:
    """`reference`'s registry and repository as the path below an owner's namespace."""
    return f"{reference.registry.lower().replace(':', '_')}/{reference.repository}"


def namespaced(owner: str, reference: Reference) -> Reference:
    """The name under which the image a pipeline of `owner` tags `reference` is stored."""
    repository = f"{owner_slug(owner)}/{_namespaced_path(reference)}"
    if len(NAMESPACE_REGISTRY) + 1 + len(repository) > 255:
        raise ImageReferenceError(
            f"image name {reference.familiar!r} is too long to be kept in the repository's "
            "namespace of the image store (255 characters with the namespace); use a shorter name"
        )
    return Reference(NAMESPACE_REGISTRY, repository, reference.tag, reference.digest)


def not_found(ref: Reference | str) -> ImageNotFoundError:
    """The error for an image that is not in the store, saying how to get it."""
    text = ref.familiar if isinstance(ref, Reference) else ref
    return ImageNotFoundError(
        f"image {text!r} is not in the local image store. Get it with `kapal image pull {text}`, "
        f"`kapal image import FILE` (docker save or OCI archive), or for Debian/busybox base "
        f"images `kapal image bootstrap debian:bookworm` / `kapal image bootstrap busybox`"
    )


class ImageStore:
    """The OCI image store rooted at `root` (usually `RunnerSettings().images_dir`).

    Lifecycle: construct (creates the directories), then use from any number of threads and
    processes; there is nothing to close. Writers that add blobs over several calls (a build adding
    layers, then committing) wrap them in `with store.session():` so a concurrent `gc()` waits.
    """

    def __init__(self, root: Path, owner: str | None = None) -> None:
        self.root = root
        self.owner = owner
        self.tmp = root / "tmp"
        self.layers_dir = root / "layers"
        for directory in (root, root / "blobs" / "sha256", self.tmp, self.layers_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(root / "blobs", self.tmp)
        self._tags_path = root / "tags.json"
        self._gc_lock_path = root / "gc.lock"

    @functools.cached_property
    def _lock(self) -> FileLock:
        """The store's lock, made on first use: filelock costs ~15 ms to import, and reading an
        image (what `kapal exec` and a warm `kapal build` do) never takes it."""
        from filelock import FileLock

        return FileLock(str(self.root / "store.lock"))

    def for_owner(self, owner: str | None) -> ImageStore:
        """This store as the pipelines of `owner` see it (the operator's view for None)."""
        return ImageStore(self.root, owner)

    # -- locking ---------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[ImageStore]:
        """Hold off `gc()` while blobs written inside are not yet referenced by a tag."""
        fd = os.open(self._gc_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield self
        finally:
            os.close(fd)

    @contextmanager
    def _exclusive(self, wait: bool) -> Iterator[bool]:
        fd = os.open(self._gc_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    # -- tags ------------------------------------------------------------------------------

    def _read_tags(self) -> dict[str, str]:
        try:
            data = json.loads(self._tags_path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise ImageError(
                f"the tag index {self._tags_path} is not valid JSON ({exc}); restore it or delete "
                "it (images then have to be tagged again)"
            ) from exc
        return {str(k): str(v) for k, v in data.items()}

    def _write_tags(self, tags: dict[str, str]) -> None:
        import tempfile

        fd, name = tempfile.mkstemp(dir=self.root, prefix=".tags-")
        try:
            with space_checked(self.root):
                with os.fdopen(fd, "w") as f:
                    json.dump(dict(sorted(tags.items())), f, indent=1)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(name, self._tags_path)
        finally:
            Path(name).unlink(missing_ok=True)

    def _visible(self, tags: dict[str, str]) -> dict[str, str]:
        """The tags this store's owner sees: its own namespace's and the base images'."""
        if self.owner is None:
            return tags
        own = namespace_prefix(self.owner)
        return {k: v for k, v in tags.items() if k.startswith(own) or not _in_namespace(k)}

    def _lookup_keys(self, ref: Reference) -> list[str]:
        """The tag keys a name resolves through, in order: the owner's own build, the base."""
        if self.owner is None:
            return [str(ref)]
        if ref.registry == NAMESPACE_REGISTRY:
            return []  # another repository's build, or a name only the operator uses
        return [str(namespaced(self.owner, ref)), str(ref)]

    def writable_name(self, reference: Reference | str) -> Reference:
        """The name a tag `reference` written through this store is kept under.

        For an owner's store that is its namespace's name; `TagRefusedError` for a name in
        kapal's reserved namespace, which pipelines may neither read nor write.
        """
        ref = reference if isinstance(reference, Reference) else Reference.parse(reference)
        if self.owner is None:
            return ref
        if ref.registry == NAMESPACE_REGISTRY:
            raise TagRefusedError(
                f"tag {ref.familiar!r} is in {NAMESPACE_REGISTRY}/, where kapal keeps the images "
                "each repository's pipelines build; a pipeline cannot write there. Tag the image "
                f"with a name of your own (such as `{ref.repository.rsplit('/', 1)[-1]}:"
                f"{ref.tag or 'latest'}`): jobs of this repository find it by that name"
            )
        return namespaced(self.owner, ref)

    def tags(self) -> dict[Reference, str]:
        """Every tag this store's owner sees and the manifest digest it points to."""
        return {Reference.parse(k): v for k, v in self._visible(self._read_tags()).items()}

    def tag(self, image: Image | str, reference: Reference | str) -> Reference:
        """Point the tag `reference` at `image` (an Image or a manifest digest).

        A digest reference (`name@sha256:…`, as a pull by digest leaves) is kept as a name too, so
        `gc()` keeps the image; it resolves by its digest.
        """
        ref = reference if isinstance(reference, Reference) else Reference.parse(reference)
        if ref.tag is not None:
            ref = ref.with_tag(ref.tag)
        elif ref.digest is None:
            raise ImageError(f"cannot tag with {ref}: a tag needs a name like `app:1.0`")
        ref = self.writable_name(ref)
        digest = image.digest if isinstance(image, Image) else image
        self.get(digest)
        if self._read_tags().get(str(ref)) == digest:
            # Already so (a rebuild with nothing changed): no lock, no fsync'd rewrite. The index
            # is replaced whole, so this read is consistent; a change racing it simply follows.
            return ref
        with self._lock:
            tags = self._read_tags()
            tags[str(ref)] = digest
            self._write_tags(tags)
        return ref

    def untag(self, reference: Reference | str) -> list[Reference]:
        """Remove a tag, or every tag of a digest reference; return what was removed."""
        ref = reference if isinstance(reference, Reference) else Reference.parse(reference)
        own = namespace_prefix(self.owner) if self.owner is not None else ""
        with self._lock:
            tags = self._read_tags()
            if ref.digest is not None:
                gone = [
                    k
                    for k, v in tags.items()
                    if ref.digest in (v, k.partition("@")[2]) and k.startswith(own)
                ]
            else:
                gone = [k for k in tags if k == str(self.writable_name(ref))]
            if not gone:
                raise not_found(ref)
            for key in gone:
                del tags[key]
            self._write_tags(tags)
        return [Reference.parse(k) for k in gone]

    # -- images ----------------------------------------------------------------------------

    def get(self, digest: str, reference: Reference | None = None) -> Image:
        """The image whose manifest has `digest`; `ImageNotFoundError` if it is not stored."""
        if not self.blobs.has(digest):
            raise not_found(reference or digest)
        where = f"manifest {digest}"
        manifest = self._json_blob(digest, where)
        if manifest.get("mediaType") in mt.INDEXES:
            chosen = pick_platform(manifest, f"image index {digest}")
            return self.get(str(chosen.get("digest", "")), reference)
        mt.check_manifest_type(str(manifest.get("mediaType", mt.OCI_MANIFEST)), where)
        config_desc = manifest.get("config") or {}
        config_digest = str(config_desc.get("digest", ""))
        if not self.blobs.has(config_digest):
            raise ImageError(
                f"{where}: its config blob {config_digest} is missing from the store; "
                "remove the image and get it again"
            )
        config = self._json_blob(config_digest, f"config {config_digest}")
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layer_descs = manifest.get("layers") or []
        if len(diff_ids) != len(layer_descs):
            raise ImageError(
                f"{where}: {len(layer_descs)} layers but {len(diff_ids)} diff_ids in its config"
            )
        layers = tuple(
            LayerDescriptor(
                digest=str(d["digest"]),
                diff_id=str(diff_id),
                size=int(d.get("size", 0)),
                media_type=str(d.get("mediaType", mt.OCI_LAYER_GZIP)),
            )
            for d, diff_id in zip(layer_descs, diff_ids, strict=True)
        )
        return Image(digest, manifest, config, layers, reference)

    def get_config(self, digest: str) -> dict[str, Any]:
        """The stored image config blob `digest`, parsed (verified against its digest)."""
        return self._json_blob(digest, f"config {digest}")

    def _json_blob(self, digest: str, where: str) -> dict[str, Any]:
        try:
            value = json.loads(self.blobs.read_bytes(digest, where))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ImageError(f"{where} is not valid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise ImageError(f"{where} is not a JSON object")
        return value

    def resolve(self, reference: Reference | str) -> Image:
        """The local image for a reference (tag or digest); `ImageNotFoundError` names the fixes."""
        ref = reference if isinstance(reference, Reference) else Reference.parse(reference)
        if ref.digest is not None:
            if self.owner is not None and ref.registry == NAMESPACE_REGISTRY:
                raise not_found(ref)
            return self.get(ref.digest, ref)
        tags = self._read_tags()
        for key in self._lookup_keys(ref):
            digest = tags.get(key)
            if digest is not None:
                return self.get(digest, ref)
        raise self._not_found(ref, tags)

    def _not_found(self, ref: Reference, tags: dict[str, str]) -> ImageNotFoundError:
        """`not_found`, naming the pipeline builds of that name the operator may have meant."""
        error = not_found(ref)
        if self.owner is not None or ref.registry == NAMESPACE_REGISTRY:
            return error
        tail = f"/{_namespaced_path(ref)}:{ref.tag}"
        built = sorted(
            Reference.parse(k).familiar for k in tags if _in_namespace(k) and k.endswith(tail)
        )
        if not built:
            return error
        return ImageNotFoundError(
            f"{error}. Pipelines built an image of that name in their repository's namespace: "
            + ", ".join(built[:3])
        )

    def exists(self, reference: Reference | str) -> bool:
        """Whether `resolve(reference)` would find an image."""
        try:
            self.resolve(reference)
        except ImageNotFoundError:
            return False
        return True

    def list_images(self) -> list[TaggedImage]:
        """Every tagged image, sorted by reference."""
        result = []
        for key, digest in sorted(self._visible(self._read_tags()).items()):
            ref = Reference.parse(key)
            try:
                result.append(TaggedImage(ref, self.get(digest, ref)))
            except ImageNotFoundError:
                continue
        return result

    def inspect(self, reference: Reference | str) -> dict[str, Any]:
        """A JSON-able description of an image: digests, tags, config, layers."""
        image = self.resolve(reference)
        tags = [
            Reference.parse(k).familiar
            for k, v in self._visible(self._read_tags()).items()
            if v == image.digest
        ]
        return {
            "Digest": image.digest,
            "Id": image.config_digest,
            "MediaType": image.media_type,
            "RepoTags": sorted(tags),
            "Created": image.created,
            "Architecture": image.config.get("architecture", ""),
            "Os": image.config.get("os", ""),
            "Size": image.size,
            "Config": image.config.get("config", {}),
            "History": image.config.get("history", []),
            "Layers": [
                {"Digest": x.digest, "DiffID": x.diff_id, "Size": x.size, "MediaType": x.media_type}
                for x in image.layers
            ],
        }

    def remove(self, reference: Reference | str) -> list[Reference]:
        """Untag an image (every tag, for a digest reference), then collect unused blobs if idle."""
        gone = self.untag(reference)
        self.gc(wait=False)
        return gone

    # -- writing ---------------------------------------------------------------------------

    def add_layer(
        self,
        tar_path: Path,
        *,
        compressed: bool | str,
        expected_diff_id: str | None = None,
        expected_digest: str | None = None,
    ) -> LayerDescriptor:
        """Store a layer tar (gzip if `compressed`, or as it names: "gzip", "zstd"); return its
        descriptor (digest, diff_id)."""
        from runner.images.layers import scan_layer

        where = f"layer {tar_path}"
        scan = scan_layer(tar_path, compressed, where)
        if expected_digest is not None and expected_digest != scan.digest:
            raise CorruptBlobError(
                f"{where}: content does not match its digest (expected {expected_digest}, got "
                f"{scan.digest}); the source is corrupt, nothing was stored"
            )
        if expected_diff_id is not None and expected_diff_id != scan.diff_id:
            raise ArchiveError(
                f"{where}: its uncompressed content hashes to {scan.diff_id}, but the image config "
                f"says {expected_diff_id}; the archive is corrupt"
            )
        if not self.blobs.has(scan.digest):
            with self.session():
                self.blobs.adopt_file(tar_path, scan.digest)
        return LayerDescriptor(
            digest=scan.digest,
            diff_id=scan.diff_id,
            size=scan.size,
            media_type=(
                mt.OCI_LAYER_ZSTD
                if compressed == "zstd"
                else mt.OCI_LAYER_GZIP
                if compressed
                else mt.OCI_LAYER
            ),
        )

    def add_manifest(
        self, manifest_bytes: bytes, tags: Iterable[Reference | str] = (), where: str = "manifest"
    ) -> Image:
        """Store exact manifest bytes whose config and layers are already stored; tag the image."""
        try:
            manifest = json.loads(manifest_bytes)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{where} is not valid JSON ({exc})") from exc
        if not isinstance(manifest, dict) or "config" not in manifest:
            raise ArchiveError(f"{where} is not an image manifest (no `config`)")
        media_type = str(manifest.get("mediaType", mt.OCI_MANIFEST))
        mt.check_manifest_type(media_type, where)
        for desc in [manifest["config"], *manifest.get("layers", [])]:
            if not self.blobs.has(str(desc.get("digest", ""))):
                raise ArchiveError(f"{where} refers to blob {desc.get('digest')}, which is missing")
        for desc in manifest.get("layers", []):
            mt.layer_is_gzip(str(desc.get("mediaType", "")), where)
        digest = self.blobs.put_bytes(manifest_bytes, where=where)
        image = self.get(digest)
        refs = [self.tag(image, t) for t in tags]
        return self.get(digest, refs[0]) if refs else image

    def add_index(self, index_bytes: bytes, where: str = "image index") -> str:
        """Store an image index / manifest list (so digest references to it resolve)."""
        return self.blobs.put_bytes(index_bytes, where=where)

    def commit(
        self,
        config: dict[str, Any],
        layers: Iterable[LayerDescriptor],
        tags: Iterable[Reference | str] = (),
        annotations: dict[str, str] | None = None,
    ) -> Image:
        """Write `config` (its rootfs.diff_ids set from `layers`) and an OCI manifest; tag it."""
        layers = list(layers)
        config = dict(config)
        config["rootfs"] = {"type": "layers", "diff_ids": [x.diff_id for x in layers]}
        config.setdefault("architecture", "amd64")
        config.setdefault("os", "linux")
        return self.commit_config_bytes(canonical_json(config), layers, tags, annotations)

    def commit_config_bytes(
        self,
        config_bytes: bytes,
        layers: Iterable[LayerDescriptor],
        tags: Iterable[Reference | str] = (),
        annotations: dict[str, str] | None = None,
    ) -> Image:
        """Like `commit`, keeping the exact config bytes (so the image id is preserved)."""
        with self.session():
            config_digest = self.blobs.put_bytes(config_bytes, where="image config")
            manifest: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {
                    "mediaType": mt.OCI_CONFIG,
                    "digest": config_digest,
                    "size": len(config_bytes),
                },
                "layers": [x.to_descriptor() for x in layers],
            }
            if annotations:
                manifest["annotations"] = dict(annotations)
            return self.add_manifest(canonical_json(manifest), tags, "committed manifest")

    # -- unpacked layers -------------------------------------------------------------------

    def layer_path(self, diff_id: str) -> Path:
        """Where the layer with `diff_id` is (or would be) unpacked."""
        return self.layers_dir / diff_id.partition(":")[2]

    def unpacked_layers(self, image: Image) -> list[Path]:
        """The image's layer directories, bottom-first, unpacked on first use (overlay lowers)."""
        return [self._unpack(layer) for layer in image.layers]

    def _unpack(self, layer: LayerDescriptor) -> Path:
        final = self.layer_path(layer.diff_id)
        if final.is_dir():
            return final
        where = f"layer {layer.digest}"
        gzip = mt.layer_compression(layer.media_type, where)
        blob = self.blobs.path(layer.digest)
        if not blob.is_file():
            raise ImageError(f"{where} is missing from the store; remove the image, get it again")
        from filelock import FileLock

        from runner.images.layers import scan_layer, unpack_layer

        lock = FileLock(str(self.tmp / f"unpack-{layer.diff_id.partition(':')[2]}.lock"))
        with self.session(), lock:
            if final.is_dir():
                return final
            scan = scan_layer(blob, gzip, where)
            if scan.digest != layer.digest:
                raise CorruptBlobError(
                    f"{where} in the image store is corrupt (content hashes to {scan.digest}); "
                    "remove the image with `kapal image rm` and get it again"
                )
            if scan.diff_id != layer.diff_id:
                raise ArchiveError(
                    f"{where}: uncompressed content hashes to {scan.diff_id}, the image config "
                    f"says {layer.diff_id}; the image is corrupt"
                )
            work = self.tmp / f"layer-{os.urandom(16).hex()}"
            try:
                unpack_layer(blob, gzip, work, scan, where)
                os.rename(work, final)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise StoreFullError(f"no space left while unpacking {where}") from exc
                raise
            finally:
                if work.exists():
                    shutil.rmtree(work, ignore_errors=True)
        return final

    # -- garbage collection ----------------------------------------------------------------

    def _referenced(self) -> tuple[set[str], set[str]]:
        blobs: set[str] = set()
        diff_ids: set[str] = set()
        tags = self._read_tags()
        blobs.update(k.partition("@")[2] for k in tags if "@" in k)  # pinned indexes, manifests
        for digest in set(tags.values()):
            try:
                image = self.get(digest)
            except ImageError:
                continue
            blobs.update({digest, image.digest, image.config_digest})
            blobs.update(x.digest for x in image.layers)
            diff_ids.update(x.diff_id for x in image.layers)
        return blobs, diff_ids

    def _mounted_layers(self) -> set[str]:
        """Names of unpacked layers that some overlay mount on this machine uses."""
        try:
            mounts = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return set()
        prefix = str(self.layers_dir) + "/"
        used = set()
        for line in mounts.splitlines():
            if prefix not in line:
                continue
            for part in line.replace(",", " ").replace(":", " ").replace("=", " ").split():
                if part.startswith(prefix):
                    used.add(part[len(prefix) :].split("/")[0])
        return used

    def gc(self, *, wait: bool = True) -> GcReport:
        """Delete blobs and unpacked layers no tag reaches, and leftover temp files.

        Waits for writers holding `session()` unless `wait` is false (then does nothing if busy).
        Unpacked layers that a mounted overlay uses are kept.
        """
        with self._exclusive(wait) as locked:
            if not locked:
                return GcReport(0, 0, 0)
            with self._lock:
                keep_blobs, keep_diff_ids = self._referenced()
            freed = blobs = layers = 0
            for digest in list(self.blobs.digests()):
                if digest not in keep_blobs:
                    freed += self.blobs.remove(digest)
                    blobs += 1
            keep_dirs = {d.partition(":")[2] for d in keep_diff_ids} | self._mounted_layers()
            for entry in self.layers_dir.iterdir():
                if entry.name not in keep_dirs:
                    shutil.rmtree(entry, ignore_errors=True)
                    layers += 1
            for entry in self.tmp.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                elif not entry.name.endswith(".lock"):
                    entry.unlink(missing_ok=True)
        return GcReport(blobs=blobs, layers=layers, bytes_freed=freed)
