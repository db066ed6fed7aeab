"""Hypermodels used by tests through the `package.module:Class` search-space path."""

from search_spaces.image_cnn import ImageCNN


class ExplodingCNN(ImageCNN):
    """The image CNN, except that `explode=True` raises while building (a broken trial)."""

    def build(self, hp):
        if hp.Boolean("explode", default=False):
            raise ValueError("boom: this configuration cannot be built")
        return super().build(hp)
