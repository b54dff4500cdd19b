"""``python -m nsx_route_gc``."""

from nsx_route_gc.cli import main

main()
