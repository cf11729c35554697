"""Live serving: `streamchar serve`, a FastAPI app on uvicorn with the page and the API, the
sessions it holds and the threads that generate for them."""
