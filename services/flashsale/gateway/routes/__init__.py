"""The gateway's routers, one module per area; each exposes `router()` building a fresh APIRouter."""
