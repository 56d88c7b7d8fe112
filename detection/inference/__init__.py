"""Using a trained detector: batched prediction on image files, pictures, result files and export."""
