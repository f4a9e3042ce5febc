"""`tierwise dashboard`: a web page over the decision log (stdlib HTTP server, bundled assets)."""
