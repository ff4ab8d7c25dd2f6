"""The example model repository: model folders (model.yaml) and the builders that fill them."""
