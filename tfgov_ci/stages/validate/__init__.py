"""The validate stage: is this configuration fit to build a governed image from?"""
