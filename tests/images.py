"""Build real OCI images through the Store API, for tests."""

import gzip
import hashlib
import io
import json
import tarfile
import time

from contentstore import mediatypes as mt
from contentstore.manifest import Descriptor


def make_layer(files: dict[str, bytes | str], compress: bool = True) -> tuple[bytes, str]:
    """A layer blob holding ``files`` (path -> content; a str ending in '/' is a dir).

    Returns the blob and its diffID (the digest of the uncompressed tar).
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path.rstrip("/"))
            info.mtime = 1_700_000_000
            if path.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            data = content.encode() if isinstance(content, str) else content
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    blob = gzip.compress(tar_bytes, mtime=0) if compress else tar_bytes
    return blob, diff_id


def build_image(store, ref: str | None, files: dict | None = None, platform=("linux", "amd64", None),
                layers: list[dict] | None = None) -> Descriptor:
    """Put an OCI image (config, layers, manifest) into ``store`` and tag it ``ref``."""
    layer_descriptors, diff_ids = [], []
    for layer_files in layers if layers is not None else [files or {"hello.txt": "hello\n"}]:
        blob, diff_id = make_layer(layer_files)
        info = store.put(blob)
        layer_descriptors.append({"mediaType": mt.OCI_LAYER_GZIP, "digest": info.digest, "size": info.size})
        diff_ids.append(diff_id)
    os_name, arch, variant = platform
    config = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000)),
        "architecture": arch, "os": os_name,
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "contentstore tests"} for _ in diff_ids],
    }
    if variant:
        config["variant"] = variant
    config_bytes = json.dumps(config).encode()
    config_info = store.put(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_info.digest, "size": config_info.size},
        "layers": layer_descriptors,
    }
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    info = store.put(manifest_bytes)
    descriptor = Descriptor(mt.OCI_MANIFEST, info.digest, info.size)
    if ref:
        store.tag(info.digest, ref)
    return descriptor


def build_index(store, ref: str, platforms: list[tuple]) -> Descriptor:
    """An OCI index with one single-layer image per platform, tagged ``ref``."""
    entries = []
    for platform in platforms:
        desc = build_image(store, None, {f"{'-'.join(p for p in platform if p)}.txt": str(platform)},
                           platform=platform)
        os_name, arch, variant = platform
        entry = {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size,
                 "platform": {"os": os_name, "architecture": arch, **({"variant": variant} if variant else {})}}
        entries.append(entry)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    info = store.put(json.dumps(index).encode())
    store.tag(info.digest, ref)
    return Descriptor(mt.OCI_INDEX, info.digest, info.size)
