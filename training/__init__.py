"""The training job: fit scaler and autoencoder, calibrate, publish a versioned artifact."""
