"""Kept for plugins written against contentstore 0.1: the names now live in
:mod:`contentstore.model.mediatypes`."""

from contentstore.model.mediatypes import *  # noqa: F401,F403
