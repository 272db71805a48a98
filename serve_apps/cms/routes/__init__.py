"""The CMS's routes, one ``APIRouter`` per resource, composed by ``serve_apps.cms.app.build_api``."""
