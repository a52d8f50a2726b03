"""augur's own HTTP server: TLS and auth from `--web.config.file`, limits on its connections."""
