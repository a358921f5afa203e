"""Model weights shipped with ase-electra: ``load_model("default")`` sends molecules to ``default/``
and periodic structures to ``crystal/`` (:class:`ase_electra.models.shipped.ShippedModel`)."""
