"""Pictures that know about a model: a family's run-folder figures (artifacts.py), latent-variable,
diffusion, sampler, toy 2-D and discrete-diffusion figures. They sit above models and metrics;
the image and plot writers they use are in genlab.viz."""
