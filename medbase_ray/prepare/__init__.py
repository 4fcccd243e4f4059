"""The prepare stage: chat format, tokenization with loss masks, packing, mixture.

Pure core (no Ray): chat_format, tokenization, packing, inputs, stream, output,
manifest, mixture (files go through the shared medbase_ray.storage).
Ray layer: pipeline (`run_prepare`, `resolve_mixture`).
"""
