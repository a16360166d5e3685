"""Helpers shared by the convolutional models."""

import jax


def conv1d(x, kernel, stride=1, dilation=1):
  """VALID 1-D convolution over time.

  Args:
    x: [batch, time, in_channels].
    kernel: [kernel_size, in_channels, out_channels].
    stride: output step, in input samples.
    dilation: spacing of the kernel taps, in input samples.

  Returns:
    [batch, (time - (kernel_size - 1) * dilation - 1) // stride + 1,
    out_channels]; output n reads inputs n * stride + j * dilation for
    j = 0 .. kernel_size - 1, so with `time` chosen by the caller the last
    output ends exactly at the last input.
  """
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(stride,), padding="VALID",
      rhs_dilation=(dilation,), dimension_numbers=("NWC", "WIO", "NWC"))
