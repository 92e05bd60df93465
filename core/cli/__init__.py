"""The cli room: the `overlay-tui` command line (main) and one module per subcommand, each a front door onto
:class:`core.service.Service` (plus the lab and serve rooms, which are not cluster services)."""
