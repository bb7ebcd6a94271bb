"""`dlrun serve`: trained runs behind HTTP (FastAPI routes on uvicorn), with dynamic batching, model versions,
Prometheus metrics and a training-serving skew guard. Requests are prepared and answered by `dlrun predict`'s
own code (dlrun/predict), so a served prediction is the prediction `dlrun predict` makes."""
