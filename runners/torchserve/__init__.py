"""TorchServe runner side: our handler and the .mar archiving (TorchServe itself is the server)."""
