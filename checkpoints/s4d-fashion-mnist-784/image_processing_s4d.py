"""Image processor for S4D: images in, raster-order pixel sequences ``pixel_values`` (B, H·W, C) out.

S4D classifies an image as a 1-D sequence of pixels (the paper's sequential CIFAR: 32·32 = 1024 steps of 3 RGB
features, read row by row). This processor does the usual transformers steps on the PIL/NumPy backend
(``PilBackend``: CPU only, no torchvision) — RGB or grayscale conversion, resize, rescale to [0, 1], normalise with
the stored ``image_mean`` / ``image_std`` — and then flattens each (C, H, W) image into (H·W, C), pixel (i, j) at
position i·W + j. The model also accepts (B, C, H, W) and flattens it the same way.

Pixel scale: with ``do_rescale`` (the default) every image is first read at its own full scale, so that 16-bit and
float images are not clipped to 8 bits; see :class:`S4DImageProcessor` for the rule.

Requires Pillow (the ``vision`` extra). This module imports nothing from s4d_hf, so a saved processor loads as
remote code.
"""

import os

import numpy as np
import torch
from transformers import BatchFeature
from transformers.image_processing_backends import PilBackend
from transformers.image_transforms import convert_to_rgb
from transformers.image_utils import ChannelDimension, PILImageResampling, infer_channel_dimension_format, is_pil_image
from transformers.processing_utils import ImagesKwargs


# PIL modes whose pixels do not fit 8 bits: read as arrays (uint16 / int32 / float32) and scaled by their own range,
# never through convert("RGB"), which clips them to 0..255.
_WIDE_PIL_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def full_scale(image: np.ndarray) -> float:
    """The value of a white pixel for the image's dtype (see the rule in :class:`S4DImageProcessor`)."""
    if image.dtype in (np.uint8, np.int8):
        return 255.0
    peak = float(image.max())
    if image.dtype == np.int64 and peak <= 255:  # np.array / torch.tensor of Python ints: 8-bit values, as ever
        return 255.0
    return 65535.0 if peak <= 65535 else float(np.iinfo(image.dtype).max)


def to_standard_scale(image: np.ndarray, round_to_uint8: bool) -> np.ndarray:
    """Any pixel type -> uint8 (0..255, 8-bit images, unchanged) or float32 in [0, 1] (every other image, at its own
    full scale); with ``round_to_uint8`` (before a PIL resize, which works in 8 bits and would truncate) floats are
    rounded to uint8 too. Raises a ValueError naming ``images`` for values outside the type's range."""
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind in "iu":
        if image.min() < 0:
            raise ValueError(f"images has negative pixel values (min {image.min()}, dtype {image.dtype}); integer "
                             "pixels must be >= 0")
        unit = image.astype(np.float64) / full_scale(image)
    else:
        low, peak = float(image.min()), float(image.max())
        if low < 0 or peak > 255:
            raise ValueError(f"images has float pixel values in [{low:g}, {peak:g}]; with do_rescale=True float "
                             "images must be in [0, 1] or [0, 255] (pass do_rescale=False for images already scaled)")
        if peak <= 1:
            unit = image.astype(np.float64)  # already in [0, 1]: not divided by 255 again
        elif np.array_equal(image, np.round(image)):
            return image.astype(np.uint8)  # whole numbers 0..255: exactly an 8-bit image
        else:
            unit = image.astype(np.float64) / 255.0
    if round_to_uint8:
        return np.round(unit * 255.0).astype(np.uint8)
    return unit.astype(np.float32)


def luma(image: np.ndarray) -> np.ndarray:
    """(3, H, W) RGB -> (1, H, W) ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B. uint8 stays uint8 with PIL's own
    fixed-point rounding, so arrays and PIL images give identical grayscale pixels."""
    if image.dtype == np.uint8:
        r, g, b = image.astype(np.uint32)
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)[None]
    return np.tensordot(np.asarray((0.299, 0.587, 0.114)), image.astype(np.float64), axes=1)[None]


class S4DImageProcessorKwargs(ImagesKwargs, total=False):
    """
    do_grayscale (`bool`, *optional*): convert to one luma channel (ITU-R 601-2, as PIL's convert("L")).
    """

    do_grayscale: bool | None


class S4DImageProcessor(PilBackend):
    r"""
    Args (all optional, also accepted by ``__call__``):
        do_resize (`bool`, defaults to True) / size (`dict`, defaults to {"height": 32, "width": 32}) / resample.
        do_grayscale (`bool`, defaults to False): one luma channel instead of RGB.
        do_convert_rgb (`bool`, defaults to True): PIL images of any mode, and 1- or 4-channel arrays, to RGB.
        do_rescale (`bool`, defaults to True) / rescale_factor (defaults to 1/255): the factor applies to 8-bit pixels
            (0..255). Every other image is first read at its own full scale (below), so the default maps white to 1
            for any input type. With do_rescale=False pixel values pass through as given.
        do_normalize (`bool`, defaults to True) / image_mean / image_std: one value per output channel; default 0.5
            (maps [0, 1] to [-1, 1]).

    Returns ``pixel_values`` of shape (B, H·W, C): C = 3 (RGB) or 1 (grayscale), raster order.

    Pixel scale (with do_rescale=True): white is

    * 255 for uint8 / int8 arrays and 8-bit PIL images (L, RGB, RGBA, P, ...), unchanged from transformers;
    * 65535 for 16-bit images: uint16 / int16 / int32 / uint32 arrays and PIL modes "I;16" and "I" (how PIL opens
      16-bit PNG and TIFF files), or the dtype's maximum when a value exceeds 65535;
    * for int64 (``np.array`` / ``torch.tensor`` of Python ints): 255 when every value is at most 255, else as 16-bit;
    * for float arrays, tensors and PIL mode "F": 1 when the maximum is at most 1 (an image already in [0, 1] is not
      divided by 255 again), else 255 (values must then lie in [0, 255]). Only an image whose pixels are all 0 or 1
      is ambiguous; it is read as [0, 1].

    Negative pixels, and floats above 255, are refused with a ValueError. The PIL resize works in 8 bits, so a 16-bit
    or float image that is resized is rounded to 8-bit precision first (never clipped); without resizing it keeps
    its full precision.
    """

    valid_kwargs = S4DImageProcessorKwargs
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    size = {"height": 32, "width": 32}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    do_grayscale = False
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)

    def __init__(self, **kwargs):
        if kwargs.get("do_grayscale"):  # one channel: default statistics of one value
            kwargs.setdefault("image_mean", (0.5,))
            kwargs.setdefault("image_std", (0.5,))
        super().__init__(**kwargs)

    def to_dict(self) -> dict:
        """As transformers', for the saved ``preprocessor_config.json``, with the remote-code entry under
        ``AutoFeatureExtractor`` and ``AutoProcessor`` and no ``image_processor_type``.

        transformers' pipelines also look for a video processor, and read an ``image_processor_type`` or an
        ``AutoImageProcessor`` entry as a hint for a "...VideoProcessor" class in the folder's remote code: with s4d-hf
        installed that stopped ``pipeline("image-classification", model=folder)`` at a "run custom code?" prompt.
        ``AutoImageProcessor`` still finds this class without s4d-hf (it reads an ``AutoFeatureExtractor`` entry when
        no image-processor type is given), and with s4d-hf through the registration of S4DConfig, which it finds
        through the model's config.json in the same folder (a folder holding only this file needs
        ``trust_remote_code=True``, or ``S4DImageProcessor.from_pretrained``).
        """
        output = super().to_dict()
        output.pop("image_processor_type", None)
        auto_map = output.pop("auto_map", None)
        if auto_map:
            reference = auto_map.pop("AutoImageProcessor", None) or auto_map.get("AutoFeatureExtractor")
            output["auto_map"] = {**auto_map, "AutoFeatureExtractor": reference, "AutoProcessor": reference}
        return output

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list:
        """One image (PIL, path, (H, W), (H, W, C) or (C, H, W) array/tensor), a 4-D batch, or a list of images ->
        a flat list; anything else raises an error naming ``images``."""
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError("images is an empty list; pass an image or a list of images")
            items = list(images)
        elif isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            if images.shape[0] == 0:
                raise ValueError(f"images has shape {tuple(images.shape)}: batch size 0; pass at least one image")
            items = list(images)
        else:
            items = [images]
        flat = []
        for i, image in enumerate(items):
            name = "images" if len(items) == 1 else f"images[{i}]"
            if isinstance(image, str):
                if not image.startswith(("http://", "https://")) and not os.path.isfile(image):
                    raise ValueError(f"{name} is a string but not an image file or URL: {image!r}")
                image = self.fetch_images(image)
            if not (is_pil_image(image) or isinstance(image, (np.ndarray, torch.Tensor))):
                raise TypeError(f"{name} must be a PIL image, a numpy array, a torch tensor or a file path; got "
                                f"{type(image).__name__}")
            if not is_pil_image(image) and image.ndim not in (2, 3):
                raise ValueError(f"{name} must have shape (H, W), (H, W, C) or (C, H, W) (or a batch (B, ...)); got "
                                 f"{tuple(image.shape)}")
            flat.append(image)
        return flat

    def process_image(self, image, do_convert_rgb=None, input_data_format=None, do_grayscale=None, **kwargs):
        """One image -> (C, H, W) numpy array: validated, brought to the standard scale (uint8 0..255, or float32 in
        [0, 1] for other pixel types; see the class docstring), then grayscale or RGB conversion."""
        do_rescale = kwargs.get("do_rescale", self.do_rescale)
        if is_pil_image(image):
            if image.width == 0 or image.height == 0:
                raise ValueError(f"images has zero size ({image.width}x{image.height}); every image needs pixels")
            if image.mode in _WIDE_PIL_MODES:  # 16-bit / 32-bit / float: as an array, never clipped to 8 bits
                image = np.asarray(image)
                image = image.astype(image.dtype.newbyteorder("="))  # "I;16B" is big-endian
            else:
                image = convert_to_rgb(image, return_numpy=True) if (do_convert_rgb or do_grayscale) \
                    else np.array(image)
            input_data_format = ChannelDimension.LAST
        elif isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        if image.dtype.kind not in "fiu" or image.dtype == np.uint64:
            raise TypeError(f"images must hold real pixel values (uint8, integers or floats); got dtype {image.dtype}")
        if image.size == 0:
            raise ValueError(f"images has zero size (shape {image.shape}); every image needs pixels")
        if not np.isfinite(image).all():
            raise ValueError("images contains NaN or inf pixel values")
        if do_rescale:
            image = to_standard_scale(image, round_to_uint8=bool(kwargs.get("do_resize", self.do_resize)))
        if image.ndim == 2:
            image = image[None]
        else:
            if input_data_format is None:
                try:
                    input_data_format = infer_channel_dimension_format(image, num_channels=(1, 3, 4))
                except ValueError:
                    raise ValueError(f"images of shape {image.shape}: cannot tell the channel axis; expected 1, 3 or "
                                     "4 channels first or last (or pass input_data_format)") from None
            if input_data_format == ChannelDimension.LAST:
                image = np.moveaxis(image, -1, 0)
        if image.shape[0] == 4 and (do_convert_rgb or do_grayscale):  # RGBA -> RGB on a white background
            if image.dtype == np.uint8 or not do_rescale:
                image = convert_to_rgb(image, return_numpy=True, input_data_format=ChannelDimension.FIRST)
                image = np.moveaxis(image, -1, 0) if image.shape[-1] == 3 else image
            else:  # float in [0, 1]: the same compositing without PIL's 8 bits
                alpha = image[3:]
                image = image[:3] * alpha + (1.0 - alpha)
        if do_grayscale and image.shape[0] == 3:
            image = luma(image)
        elif do_convert_rgb and not do_grayscale and image.shape[0] == 1:
            image = np.repeat(image, 3, axis=0)
        return image

    def rescale(self, image: np.ndarray, scale: float, **kwargs) -> np.ndarray:
        """``scale`` (rescale_factor) is for 8-bit pixels; a float image is already in [0, 1] (``process_image``
        brought it there), so it gets ``scale * 255`` (1 for the default 1/255)."""
        if image.dtype.kind == "f":
            scale = scale * 255.0
        return super().rescale(image, scale, **kwargs)

    def _preprocess(self, images, do_normalize, image_mean, image_std, return_tensors, **kwargs) -> BatchFeature:
        channels = images[0].shape[0]
        for name, stats in (("image_mean", image_mean), ("image_std", image_std)):
            if do_normalize and not isinstance(stats, (int, float)) and len(stats) != channels:
                raise ValueError(f"{name} has {len(stats)} value(s) but the images have {channels} channel(s) "
                                 f"(do_grayscale={kwargs.get('do_grayscale')}); give one value per channel")
        processed = super()._preprocess(images, do_normalize=do_normalize, image_mean=image_mean, image_std=image_std,
                                        return_tensors=None, **kwargs)["pixel_values"]
        shapes = {image.shape for image in processed}
        if len(shapes) > 1:
            raise ValueError(f"images have different sizes {sorted(shapes)} after processing; set do_resize=True "
                             "(with size) to give every pixel sequence the same length")
        # (C, H, W) -> (H·W, C): raster order, pixel (i, j) at position i·W + j
        sequences = [np.ascontiguousarray(image.reshape(image.shape[0], -1).T, dtype=np.float32) for image in processed]
        return BatchFeature({"pixel_values": np.stack(sequences)}, tensor_type=return_tensors)


__all__ = ["S4DImageProcessor"]
