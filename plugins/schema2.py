"""Docker image manifest v2, schema 2, with Docker's image config and layer types."""

from contentstore.model import mediatypes as mt
from contentstore.model.manifest import parse_image_manifest, peek_json
from contentstore.plugin import hookimpl

LAYER_COMPRESSION = {
    mt.DOCKER_LAYER_GZIP: "gzip",
    mt.DOCKER_LAYER: "none",
    mt.DOCKER_FOREIGN_LAYER: "gzip",
}


@hookimpl(trylast=True)
def contentstore_manifest_media_types():
    return [mt.DOCKER_MANIFEST]


@hookimpl(trylast=True)
def contentstore_detect_media_type(data):
    body = peek_json(data)
    if body and body.get("schemaVersion") == 2 and body.get("mediaType") == mt.DOCKER_MANIFEST:
        return mt.DOCKER_MANIFEST
    return None


@hookimpl(trylast=True)
def contentstore_parse_manifest(media_type, data):
    if media_type == mt.DOCKER_MANIFEST:
        return parse_image_manifest(media_type, data, "Docker schema2 manifest")
    return None


@hookimpl(trylast=True)
def contentstore_accept_config(media_type):
    return True if media_type == mt.DOCKER_CONFIG else None


@hookimpl(trylast=True)
def contentstore_layer_compression(media_type):
    return LAYER_COMPRESSION.get(media_type)


OCI_EQUIVALENT = {
    mt.DOCKER_MANIFEST: mt.OCI_MANIFEST,
    mt.DOCKER_CONFIG: mt.OCI_CONFIG,
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_LAYER: mt.OCI_LAYER,
    mt.DOCKER_FOREIGN_LAYER: mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
}


@hookimpl(trylast=True)
def contentstore_oci_media_type(media_type):
    return OCI_EQUIVALENT.get(media_type)
