"""HTTP routers, one module per resource; `api.app.create_app` includes them.

Every path parameter is a `{name:segment}` (or `{name:segments}`): identifiers may hold
`/`, sent as `%2F` (api/rawpath.py). The convertors are registered here, before any
router module declares a route.
"""

from api import rawpath

rawpath.register()
