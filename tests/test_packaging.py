"""The distribution installs the core and the built-in plugins under distinct names."""

import importlib.util
import site
from importlib import metadata
from pathlib import Path


def test_no_top_level_plugins_package_is_installed():
    site_dirs = [Path(d).resolve() for d in site.getsitepackages() + [site.getusersitepackages()]]
    for directory in site_dirs:
        assert not (directory / "plugins").exists(), directory
    installed = [d for d in metadata.distributions(name="contentstore")
                 if Path(d.locate_file("")).resolve() in site_dirs]
    assert installed, "contentstore is not installed in site-packages"
    for dist in installed:
        assert not [f for f in dist.files or [] if str(f).startswith("plugins/")]


def test_builtin_plugins_are_importable_as_contentstore_plugins():
    spec = importlib.util.find_spec("contentstore_plugins.oci")
    assert spec is not None and spec.origin.endswith("oci.py")
    group = {ep.name: ep.value for ep in metadata.entry_points(group="contentstore")}
    assert group["oci"] == "contentstore_plugins.oci"
    assert {"schema1", "schema2", "manifestlist"} <= set(group)
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts["contentstore"] == "contentstore.cli:run"
