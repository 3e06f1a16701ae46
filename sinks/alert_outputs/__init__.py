"""Alert outputs: one module per destination, each rendering an alert into an HTTP request.

`routes` reads the typed routing file (PW_ALERT_ROUTES) and builds the outputs it names;
`sinks.alert_delivery` sends, retries, parks and redelivers.
"""
