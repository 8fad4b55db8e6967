"""Fast kernels: a fork server with preloaded imports, exposed as a jupyter_client kernel provisioner."""
