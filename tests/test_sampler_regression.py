"""The sampler refactor (issue #17, one sampler interface) changed no sample: DDPM, DDIM, DPM-Solver++,
inpainting and DDIM inversion against numbers recorded from the code before it (commit e920c38).

Each reference is (sum, sum of squares, first three values) of the output, computed in float64 from a
fixed elementwise toy network and fixed seeds; the old and new code were also compared tensor by tensor
(torch.equal) on 540 configurations while refactoring. Elementwise ops only, so the numbers do not depend
on a BLAS; the tolerance allows for a last-bit difference of tanh between CPUs.
"""

import pytest
import torch

from genlab.diffusion import samplers
from genlab.diffusion.ddim import ddim_invert
from genlab.diffusion.inpaint import inpaint
from genlab.diffusion.schedules import make_schedule

REFERENCE = {
    "ddpm-lin-eps": (-3.4528481792658567, 34.34293323750602, [-1.0, -1.0, -0.09152572602033615]),
    "ddpm-cos-v-noclip": (-10.520848982036114, 178.38009912662264, [-4.440948963165283, 2.1898863315582275,
                                                                     -0.1082998663187027]),
    "ddim-lin-eta0": (-1.5839402659330517, 41.960465000320426, [-1.0, 1.0, -1.0]),
    "ddim-cos-eta1-quad-v": (-1.460184802301228, 26.345901513825268, [1.0, 1.0, -0.27412688732147217]),
    "ddim-lin-eta.5-x0": (8.182199178263545, 34.788954863042605, [-0.642921507358551, -0.018443940207362175,
                                                                   0.11487342417240143]),
    "dpmpp-lin-7": (10.784578098915517, 41.51612223551403, [-1.0, 1.0, -0.948282778263092]),
    "dpmpp-cos-20-quad-x0-noclip": (19.04703949764371, 55.93792410211139, [-0.17397992312908173, 0.29109814763069153,
                                                                            0.25293606519699097]),
    "inpaint-lin-r3": (3.229207254946232, 33.18011334796432, [0.1192772388458252, -1.0, -0.8170863389968872]),
    "inpaint-cos-eta0-v": (6.780699297785759, 30.904636156038805, [0.1192772388458252, 1.0, -0.8170863389968872]),
    "invert-cos-refine2": (16.341788694262505, 71.97860985123761, [1.165134072303772, 1.202703595161438,
                                                                    0.44720935821533203]),
}


class Net(torch.nn.Module):
    """A fixed elementwise function of (x_t, t): tanh(w x + b_t) * 1.5."""

    def __init__(self, T):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(1, 2, 3, 3, generator=g)
        self.b = torch.randn(T, 2, 3, 3, generator=g) * 0.3

    def forward(self, x, t, y=None):
        return torch.tanh(x * self.w + self.b[t]) * 1.5


def g(seed):
    return torch.Generator().manual_seed(seed)


def run_case(name):
    s = make_schedule("cosine" if "cos" in name else "linear", 40)
    net, shape = Net(40), (4, 2, 3, 3)
    known = torch.rand(shape, generator=g(4)) * 2 - 1
    mask = (torch.rand(4, 1, 3, 3, generator=g(5)) > 0.5).float()
    return {
        "ddpm-lin-eps": lambda: samplers.sample(s, net, shape, "ddpm", generator=g(1)),
        "ddpm-cos-v-noclip": lambda: samplers.sample(s, net, shape, "ddpm", prediction="v", clip=False,
                                                     generator=g(1)),
        "ddim-lin-eta0": lambda: samplers.sample(s, net, shape, "ddim", steps=9, generator=g(2)),
        "ddim-cos-eta1-quad-v": lambda: samplers.sample(s, net, shape, "ddim", steps=9, eta=1.0, spacing="quadratic",
                                                        prediction="v", generator=g(2)),
        "ddim-lin-eta.5-x0": lambda: samplers.sample(s, net, shape, "ddim", steps=12, eta=0.5, prediction="x0",
                                                     generator=g(2)),
        "dpmpp-lin-7": lambda: samplers.sample(s, net, shape, "dpmpp", steps=7, generator=g(3)),
        "dpmpp-cos-20-quad-x0-noclip": lambda: samplers.sample(s, net, shape, "dpmpp", steps=20, spacing="quadratic",
                                                               prediction="x0", clip=False, generator=g(3)),
        "inpaint-lin-r3": lambda: inpaint(s, net, known, mask, steps=8, resample=3, generator=g(6)),
        "inpaint-cos-eta0-v": lambda: inpaint(s, net, known, mask, steps=8, eta=0.0, prediction="v", generator=g(6)),
        "invert-cos-refine2": lambda: ddim_invert(s, net, known, steps=10, refine=2),
    }[name]()


@pytest.mark.parametrize("name", list(REFERENCE))
def test_samples_are_those_of_the_code_before_the_sampler_refactor(name):
    total, squares, first = REFERENCE[name]
    x = run_case(name).double()
    assert x.sum().item() == pytest.approx(total, rel=1e-6, abs=1e-5)
    assert x.pow(2).sum().item() == pytest.approx(squares, rel=1e-6)
    assert x.flatten()[:3].tolist() == pytest.approx(first, rel=1e-6, abs=1e-6)
