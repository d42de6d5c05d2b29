"""How a task that runs past its timeout is interrupted."""
