"""PyTorch peer for the GPU check: median training-step time (ms) of the MLP 784-512-512-10 and
of the benchmarks' small CNN (28x28x1 -> conv32 -> pool -> conv64 -> pool -> dense128 -> 10),
batch 256, float32, RMSprop, forward+backward+optimizer step, device synchronized."""
import time

import torch

torch.manual_seed(0)
dev = "cuda"
nn = torch.nn
models = {
    "mlp": (nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)),
            (256, 784)),
    "cnn": (nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10)),
            (256, 1, 28, 28)),
}
loss_fn = nn.CrossEntropyLoss()
for name, (model, shape) in models.items():
    model = model.to(dev)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    x = torch.rand(*shape, device=dev)
    y = torch.randint(0, 10, (shape[0],), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(60):
        t = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(f"step_ms torch {name} {times[30]:.3f}")
print("device", torch.cuda.get_device_name(0), "torch", torch.__version__)
