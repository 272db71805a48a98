"""Ray Serve applications: FastAPI ingresses, schemas, one error map. Loaded by import path only."""
