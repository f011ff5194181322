"""One construct per part of the kit; stacks in infra/stacks compose them."""
