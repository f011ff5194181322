"""Step scripts. Each runs as a SageMaker container script (`/opt/ml/...` paths, `SM_*`
environment) and as a plain local process with the paths remapped by arguments."""
