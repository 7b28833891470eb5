"""Kept for plugins written against contentstore 0.1: the names now live in
:mod:`contentstore.model.manifest`."""

from contentstore.model.manifest import *  # noqa: F401,F403
