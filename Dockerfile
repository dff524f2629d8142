# PEFT Lab: CPU image by default. For CUDA: docker build --build-arg BASE=pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime .
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH_CPU=1
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PEFTLAB_DATA_DIR=/data HF_HUB_OFFLINE=1 PEFTLAB_NATIVE_DIR=/opt/peftlab/native
# A C compiler for the fused CPU dequantize loop (peftlab_kernels/csrc/); without one the PyTorch path is used.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements.lock requirements-cpu.lock ./
# The CPU wheel of torch first (the locked version), so `torch` in requirements.txt does not pull a CUDA build;
# then everything else at the versions `make test` passed with (requirements.lock, as pip constraints).
RUN if [ "$TORCH_CPU" = "1" ]; then pip install --no-cache-dir -c requirements-cpu.lock torch \
      --index-url https://download.pytorch.org/whl/cpu; fi \
 && pip install --no-cache-dir -c requirements.lock -r requirements.txt
COPY . .
# Build the native kernels now, not on the first request.
RUN python -c "from peftlab_kernels._native import status; print(status())"
VOLUME /data
EXPOSE 8501
# Inside a container the server must listen on all interfaces; publish it with -p 127.0.0.1:8501:8501.
CMD ["streamlit", "run", "streamlit_app.py", "--server.address", "0.0.0.0", "--server.port", "8501", "--server.headless", "true"]
