"""DLRM (Naumov et al. 2019): embedding bags for categorical features, MLPs for dense
ones, pairwise dot-product interaction. Many small kernels and a memory-bound
embedding lookup make it sensitive to virtualization. The default size follows the
reference implementation's Criteo Kaggle configuration."""

from zoo.base import InputShape, TorchModel, models

# Criteo Kaggle (Display Advertising Challenge) cardinalities of the 26 categorical features.
CRITEO_KAGGLE = [
    1460,
    583,
    10131227,
    2202608,
    305,
    24,
    12517,
    633,
    3,
    93145,
    5683,
    8351593,
    3194,
    27,
    14992,
    5461306,
    10,
    5652,
    2173,
    4,
    7046547,
    18,
    15,
    286181,
    105,
    142572,
]


def _mlp(torch, sizes: list[int]):
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])  # the top MLP ends in a logit (the loss applies the sigmoid)


def build_dlrm(dense_features: int, tables: list[int], dim: int, bottom: list[int], top: list[int]):
    import torch

    class DLRM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bottom = _mlp(torch, [dense_features, *bottom, dim])
            self.embeddings = torch.nn.ModuleList(torch.nn.EmbeddingBag(n, dim, mode="sum") for n in tables)
            pairs = (len(tables) + 1) * len(tables) // 2
            self.top = _mlp(torch, [dim + pairs, *top, 1])

        def forward(self, dense, sparse):
            x = self.bottom(dense)
            batch = dense.shape[0]
            offsets = torch.arange(batch, device=dense.device)  # one index per sample and table
            vectors = [x] + [bag(sparse[:, i], offsets) for i, bag in enumerate(self.embeddings)]
            stacked = torch.stack(vectors, dim=1)  # (batch, features, dim)
            dots = torch.bmm(stacked, stacked.transpose(1, 2))
            i, j = torch.tril_indices(stacked.shape[1], stacked.shape[1], offset=-1, device=dense.device)
            return self.top(torch.cat([x, dots[:, i, j]], dim=1)).squeeze(1)

    return DLRM()


@models.register
class Dlrm(TorchModel):
    name = "dlrm"
    task = "recommendation"
    inputs = "tabular"
    summary = "DLRM recommendation model: 26 embedding tables (Criteo Kaggle sizes), bottom/top MLPs, dot interaction."
    sizes = {
        "criteo_kaggle": dict(tables=CRITEO_KAGGLE, dim=16, bottom=[512, 256, 64], top=[512, 256]),
        "tiny": dict(tables=[100] * 8, dim=8, bottom=[16], top=[16]),
    }
    default_size = "criteo_kaggle"
    dense_features = 13
    params = 540_677_217
    flops_per_sample = 972_064.0
    source = (
        "facebookresearch/dlrm, Criteo Kaggle: --arch-sparse-feature-size=16 --arch-mlp-bot=13-512-256-64-16 "
        "--arch-mlp-top=512-256-1; params = 16 x sum(cardinalities) + MLPs"
    )

    def build(self, shape: InputShape = InputShape()):
        s = self.settings
        return build_dlrm(self.dense_features, s["tables"], s["dim"], s["bottom"], s["top"])

    def make_batch(self, batch_size, shape, seed):
        import torch

        from zoo.torch_support import generator

        g = generator(seed)
        sparse = torch.stack([torch.randint(0, n, (batch_size,), generator=g) for n in self.settings["tables"]], 1)
        return {
            "dense": torch.rand(batch_size, self.dense_features, generator=g),
            "sparse": sparse,
            "labels": torch.randint(0, 2, (batch_size,), generator=g).float(),
        }

    def forward(self, model, batch):
        return model(batch["dense"], batch["sparse"])

    def loss(self, model, batch):
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(self.forward(model, batch).float(), batch["labels"])
