"""Court bundles: the bundle a justice body receives (``bundle``), the trust anchors that go
with it (``trust``) and the zip it is downloaded as (``zipstream``)."""
