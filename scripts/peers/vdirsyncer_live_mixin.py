"""cardbridge overlay for vdirsyncer's storage test suite: a server mixin for a live server.

Installed by scripts/provision-peers as tests/storage/servers/live/__init__.py inside the unpacked
vdirsyncer 0.21.0 sdist. Select it with DAV_SERVER=live. Unlike the upstream mixins it starts no
docker container and uses no fixed port: the server under test is already running, and these
environment variables say where:

    VDIRSYNCER_LIVE_URL       root URL to discover from, e.g. http://127.0.0.1:41234/
    VDIRSYNCER_LIVE_USER      user name (optional; no auth when unset)
    VDIRSYNCER_LIVE_PASSWORD  password (optional)
"""

from __future__ import annotations

import os

import pytest


class ServerMixin:
    @pytest.fixture
    def get_storage_args(self, request, tmpdir, slow_create_collection, aio_connector):
        url = os.environ.get("VDIRSYNCER_LIVE_URL")
        if not url:
            pytest.fail("DAV_SERVER=live needs VDIRSYNCER_LIVE_URL")

        async def inner(collection="test"):
            args = {"url": url, "connector": aio_connector}
            user = os.environ.get("VDIRSYNCER_LIVE_USER")
            if user:
                args["username"] = user
                args["password"] = os.environ.get("VDIRSYNCER_LIVE_PASSWORD", "")
            if collection is not None:
                args = await slow_create_collection(self.storage_class, args, collection)
            return args

        return inner
