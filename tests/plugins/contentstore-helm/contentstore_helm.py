"""A contentstore plugin for Helm charts in OCI registries (``helm push``'s format).

A chart is an OCI image manifest whose config has the media type
``application/vnd.cncf.helm.config.v1+json`` and whose one layer is the chart's
``.tgz``. contentstore refuses such manifests as "not an image" unless a plugin accepts
the config type, which is all this plugin has to do; it also names the chart layer's
compression, so the chart can be unpacked like a layer.
"""

from contentstore.plugin import hookimpl

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROVENANCE = "application/vnd.cncf.helm.chart.provenance.v1.prov"


@hookimpl
def contentstore_accept_config(media_type):
    return True if media_type == HELM_CONFIG else None


@hookimpl
def contentstore_layer_compression(media_type):
    return "gzip" if media_type == HELM_CHART else None
