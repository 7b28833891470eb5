"""OCI image manifests (image-spec v1.1), and the OCI image config and layer types."""

from contentstore.model import mediatypes as mt
from contentstore.model.manifest import parse_image_manifest, peek_json
from contentstore.plugin import hookimpl

LAYER_COMPRESSION = {
    mt.OCI_LAYER: "none",
    mt.OCI_LAYER_GZIP: "gzip",
    mt.OCI_LAYER_ZSTD: "zstd",
    mt.OCI_LAYER_NONDISTRIBUTABLE: "none",
    mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP: "gzip",
    mt.OCI_LAYER_NONDISTRIBUTABLE_ZSTD: "zstd",
}


@hookimpl(trylast=True)
def contentstore_manifest_media_types():
    return [mt.OCI_MANIFEST]


@hookimpl(trylast=True)
def contentstore_detect_media_type(data):
    body = peek_json(data)
    if body is None or body.get("schemaVersion") != 2:
        return None
    declared = body.get("mediaType")
    if declared == mt.OCI_MANIFEST or (declared is None and "config" in body and "manifests" not in body):
        return mt.OCI_MANIFEST
    return None


@hookimpl(trylast=True)
def contentstore_parse_manifest(media_type, data):
    if media_type == mt.OCI_MANIFEST:
        return parse_image_manifest(media_type, data, "OCI image manifest")
    return None


@hookimpl(trylast=True)
def contentstore_accept_config(media_type):
    return True if media_type == mt.OCI_CONFIG else None


@hookimpl(trylast=True)
def contentstore_layer_compression(media_type):
    return LAYER_COMPRESSION.get(media_type)
