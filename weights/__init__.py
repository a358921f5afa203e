"""Model weights shipped with ase-electra: ``default/`` holds the model ``load_model("default")`` loads."""
