#!/usr/bin/python3
"""Runs many .tflite models in one Arm NN process (the one-model runner,
shared/oracle/armnn-run.py, starts Python and Arm NN once per call). Same deterministic
input as that runner.

usage: /usr/bin/python3 armnn-batch.py MODEL...
Prints one JSON line per model: {model, outputs:[{name,dtype,shape,data}]} or {model, error}.
"""
import json, sys
import numpy as np
import pyarmnn as ann

NP = {ann.DataType_Float32: np.float32, ann.DataType_QAsymmU8: np.uint8, ann.DataType_QAsymmS8: np.int8,
      ann.DataType_QSymmS8: np.int8, ann.DataType_Signed32: np.int32}
NAME = {np.float32: 'float32', np.uint8: 'uint8', np.int8: 'int8', np.int32: 'int32'}

def pattern(shape, dt):
    u = (np.arange(int(np.prod(shape)), dtype=np.int64) * 37) % 256
    v = u / 255.0 if dt == np.float32 else (u - 128 if dt == np.int8 else u)
    return v.astype(dt).reshape(shape)

runtime = ann.IRuntime(ann.CreationOptions())
for model in sys.argv[1:]:
    try:
        parser = ann.ITfLiteParser()
        net = parser.CreateNetworkFromBinaryFile(model)
        inames, onames = parser.GetSubgraphInputTensorNames(0), parser.GetSubgraphOutputTensorNames(0)
        ibind = [parser.GetNetworkInputBindingInfo(0, n) for n in inames]
        obind = [parser.GetNetworkOutputBindingInfo(0, n) for n in onames]
        opt, _ = ann.Optimize(net, [ann.BackendId('CpuRef')], runtime.GetDeviceSpec(), ann.OptimizerOptions())
        net_id, _ = runtime.LoadNetwork(opt)
        arrays = []
        for b in ibind:
            ti = b[1]
            shape = tuple(ti.GetShape()[k] for k in range(ti.GetNumDimensions()))
            arrays.append(pattern(shape, NP[ti.GetDataType()]))
        itens, otens = ann.make_input_tensors(ibind, arrays), ann.make_output_tensors(obind)
        runtime.EnqueueWorkload(net_id, itens, otens)
        outs = ann.workload_tensors_to_ndarray(otens)
        runtime.UnloadNetwork(net_id)
        line = {'model': model, 'outputs': [{'name': n, 'dtype': NAME[o.dtype.type], 'shape': list(o.shape),
                                             'data': o.ravel().tolist()} for n, o in zip(onames, outs)]}
    except Exception as e:
        line = {'model': model, 'error': '%s: %s' % (type(e).__name__, str(e)[:500])}
    print(json.dumps(line), flush=True)
