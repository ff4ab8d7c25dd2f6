"""tf runner: TF Serving's gRPC API over real TensorFlow SavedModels, where no binary exists."""
