"""Kept for plugins written against contentstore 0.1: the names now live in
:mod:`contentstore.model.endpoint`."""

from contentstore.model.endpoint import *  # noqa: F401,F403
