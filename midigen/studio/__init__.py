"""midigen studio: a local web page to make music with trained checkpoints (`python -m midigen
studio`). catalog.py finds the checkpoints, server.py serves the page (static/) and its JSON API
over midigen.api."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import secrets
import sys
from pathlib import Path

from midigen.errors import ParamsError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(models: str | Path = "models", host: str = "127.0.0.1", port: int = 8765, device: str = "auto") -> int:
    """Find the checkpoints, print the page's address, serve until Ctrl-C. A host other than a
    loopback address gets a token, printed in the address, that every API call must carry."""
    from werkzeug.serving import make_server

    from midigen.studio.catalog import find
    from midigen.studio.server import create_app

    if not 0 <= port <= 65535:
        raise ParamsError(f"--port {port}: 0 (any free port) to 65535")
    print("midigen studio: looking for checkpoints ...", file=sys.stderr, flush=True)
    catalog = find(models, device)
    token = None if is_loopback(host) else secrets.token_urlsafe(16)
    try:
        app = create_app(catalog, token)
        said = io.StringIO()
        try:
            # Werkzeug prints its own advice and exits when it cannot listen: say it in one line
            with contextlib.redirect_stderr(said):
                server = make_server(host, port, app, threaded=True)
        except SystemExit:
            reason = said.getvalue().strip().splitlines()[:1] or ["cannot listen there"]
            raise ParamsError(f"--host {host} --port {port}: {reason[0]}") from None
        except OSError as exc:
            raise ParamsError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{server.server_port}/" + (f"?token={token}" if token else "")
        listed = ", ".join(catalog.entries) or f"none (no checkpoint in {models}: run dvc repro train)"
        print(f"midigen studio: {len(catalog.entries)} models: {listed}", file=sys.stderr)
        print(f"midigen studio: open {url}  (Ctrl-C stops it)", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
    finally:
        catalog.close()
    return 0
