"""Router: decides which variant of a model serves a request."""
