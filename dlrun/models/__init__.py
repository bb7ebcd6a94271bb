"""The model zoo. Each module registers its models with `@register_model` next to their code.

Every builder takes `input_shape` (without the batch dimension) and `num_outputs`, so one
model config adapts to any dataset's channels, image size and number of classes.
"""
