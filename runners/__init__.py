"""Runner processes: one per framework, each speaking its production counterpart's protocol."""
