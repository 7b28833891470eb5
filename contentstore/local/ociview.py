"""The OCI view of Docker-typed images: every named entry of ``index.json`` is OCI-typed.

skopeo, umoci, podman and oci-image-tool read only OCI media types from an OCI layout. A
manifest or index that a registry served with Docker media types (a schema2 manifest, a
manifest list) is therefore kept byte for byte, so that its registry digest survives, and
converted beside it: the same document with every media type rewritten to its OCI
equivalent (the format plugins say which, through ``contentstore_oci_media_type``), the
config and layer blobs untouched. A converted index lists only the children that are in
the store (the platforms that were pulled), each by its converted digest. A document
served OCI-typed is kept as it is.

The converted document carries the gc label ``contentstore.gc.ref.content.original``
naming the original, so gc keeps the original while the converted one lives and drops
both together; the named ``index.json`` entry also names the original's digest in the
annotation :data:`ORIGINAL_DIGEST_ANNOTATION`, for people and other tools.
"""

from __future__ import annotations

import json

from contentstore.local.interfaces import BlobStore, ReferenceIndex
from contentstore.local.manifests import Manifests
from contentstore.local.metadata import ORIGINAL_LABEL, Metadata
from contentstore.model.digest import Digest, is_valid
from contentstore.model.manifest import Descriptor, ImageManifest, Manifest, ManifestIndex
from contentstore.plugin.manager import Plugins

#: Annotation on a named ``index.json`` entry: the digest the registry knows the image by,
#: when the entry points to a converted (OCI-typed) form of it.
ORIGINAL_DIGEST_ANNOTATION = "contentstore.original.digest"


class OciView:
    """Makes and finds the OCI forms of stored manifests and indexes."""

    def __init__(self, blobs: BlobStore, manifests: Manifests, plugins: Plugins, metadata: Metadata):
        self.blobs = blobs
        self.manifests = manifests
        self.plugins = plugins
        self.metadata = metadata

    def is_oci(self, media_type: str) -> bool:
        return self.plugins.oci_media_type(media_type) == media_type

    def converted(self, descriptor: Descriptor, manifest: Manifest | None = None) -> Descriptor:
        """The OCI form of the stored document ``descriptor`` names, stored if it was not;
        ``descriptor`` itself when it is OCI-typed already (or has no OCI equivalent)."""
        manifest = manifest if manifest is not None else self.manifests.read(descriptor)
        oci_type = self.plugins.oci_media_type(manifest.media_type)
        if oci_type == manifest.media_type:
            return descriptor  # OCI-typed as served: kept as it is, the registry's digest with it
        if isinstance(manifest, ManifestIndex):
            children = [self.converted(child) for child in manifest.manifests if self.blobs.exists(child.digest)]
            body = dict(manifest.body, mediaType=oci_type, manifests=[child.to_json() for child in children])
        elif isinstance(manifest, ImageManifest) and manifest.config is not None:
            body = dict(manifest.body, mediaType=oci_type, config=self._retyped(manifest.body["config"]),
                        layers=[self._retyped(layer) for layer in manifest.body.get("layers") or []])
        else:
            return descriptor
        info = self.blobs.put(json.dumps(body, indent=2).encode())
        self.metadata.set_label(info.digest, ORIGINAL_LABEL, str(descriptor.digest))
        return Descriptor(oci_type, info.digest, info.size, descriptor.platform, dict(descriptor.annotations))

    def _retyped(self, descriptor: dict) -> dict:
        return dict(descriptor, mediaType=self.plugins.oci_media_type(descriptor.get("mediaType", "")))

    def original(self, descriptor: Descriptor) -> Descriptor:
        """What ``descriptor`` was converted from (a registry's Docker-typed bytes), or
        ``descriptor`` itself when it is no converted form."""
        digest = self.metadata.labels(descriptor.digest).get(ORIGINAL_LABEL)
        if not digest or not is_valid(digest) or not self.blobs.exists(digest):
            return descriptor
        return self.manifests.descriptor(Digest(digest))

    def entry(self, descriptor: Descriptor, manifest: Manifest | None = None,
              registry_digest: str | None = None) -> Descriptor:
        """What a named entry for ``descriptor`` holds: its OCI form, annotated with the
        digest the registry knows the image by (``registry_digest``, by default the
        original's own) where that differs from the entry's."""
        target = self.converted(descriptor, manifest)
        known_as = registry_digest or str(descriptor.digest)
        annotations = {ORIGINAL_DIGEST_ANNOTATION: known_as} if known_as != target.digest else {}
        return Descriptor(target.media_type, target.digest, target.size, target.platform, annotations)

    def upgrade(self, references: ReferenceIndex) -> list[str]:
        """Point every Docker-typed named entry (from an older contentstore) at its OCI
        form; return the names moved. Registry digests are kept: the originals stay, and
        each entry names its original."""
        moved = []
        for name, descriptor in sorted(references.names().items()):
            if self.is_oci(descriptor.media_type) or not self.blobs.exists(descriptor.digest):
                continue
            entry = self.entry(descriptor)
            if entry.digest != descriptor.digest:
                references.tag(name, entry)
                moved.append(name)
        return moved
