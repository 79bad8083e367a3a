"""The untrusted-model guard: which ops of a model's graph may run, and proof of what loading runs.

The promise: a model from an untrusted source is refused, *before anything
is imported or run*, when its graph could read or write files, reach the
network or run Python. The loaders (:mod:`saliency_tf1.models.loaders`) check
every GraphDef / MetaGraphDef with :func:`find_unsafe_ops`, and library code
that runs ops of a loaded model by itself (the re-initialisation of
:func:`saliency_tf1.metrics.sanity.randomization_check`) proves each run with
:func:`check_run` first.

The policy is an **allow-list**: every node of the graph and every node of
every function of its library (called or not: ``If``/``While``/``Case``
branches, ``PartitionedCall`` bodies, gradient functions) must have an op type
of :data:`ALLOWED_OPS`, op types known to be pure computation (math, nn,
array, strings, control flow, random numbers, reading and writing the graph's
own variables in memory), each listed with why it is safe. Anything else is
refused by default -- naming the node, its op type and, inside a function, the
call path that reaches it. A few allowed ops carry attributes that can name a
file or a resource; those attributes are checked
(:data:`CONDITIONALLY_UNSAFE_OPS`, tensor-valued attributes holding resource
or variant handles, function-valued attributes naming anything but a function
of the library).

Checkpoint ops (:data:`SAVER_OPS`) are not on the list. They are allowed only
where they are proven to be the saver's own:

* on the **restore path** -- everything the saver's restore op would run,
  through every data and control input and inside every function it calls --
  only ops of :data:`RESTORE_PATH_OPS` may run; each restore op must read the
  saver's filename tensor (which loading feeds with the checkpoint's path),
  each assignment must target a variable of the graph, and no restore op may
  feed anything the model computes. A SavedModel's **init op** is held to the
  allow-list, with no checkpoint op at all, and its assignments must target
  variables too;
* on a **save path** (or another saver's restore left in a training graph):
  a checkpoint op, or a call of a function holding one, on which only other
  saver plumbing depends (identities, no-ops, restore assignments, the merge
  of a sharded save) and nothing the model, its signatures, its collections,
  its variables' initializers or its loader runs. Running the model never runs it.

Users extend the list explicitly (``allow_ops=("LookupTableFindV2", ...)`` in
the loaders, ``--allow-op NAME`` on the command line) or switch the check off
(``allow_unsafe_ops=True``, ``--allow-unsafe-ops``); never silently. A graph
without a saver (a frozen graph) may hold no checkpoint op at all.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ..engine.graph import ancestor_ops


def _group(reason: str, names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), reason)


# ---------------------------------------------------------------------------
# The allow-list.

#: Op types known to be pure computation (or to touch only the graph's own
#: variables and in-memory state of one run), with why each is safe. Every op
#: of an untrusted graph, and of every function of its library, must be one
#: of these (or of the caller's ``allow_ops``); :data:`SAVER_OPS` are allowed
#: only where :func:`find_unsafe_ops` proves them the saver's own.
ALLOWED_OPS: Mapping[str, str] = MappingProxyType({
    **_group("a constant or a value the caller feeds",
             "Const Placeholder PlaceholderV2 PlaceholderWithDefault"),
    **_group("passes its inputs (or nothing) on unchanged: graph plumbing",
             "NoOp Identity IdentityN RefIdentity StopGradient PreventGradient Snapshot "
             "EnsureShape GuaranteeConst ControlTrigger DebugGradientIdentity "
             "DebugGradientRefIdentity"),
    **_group("checks its input's values and fails the run if they are wrong",
             "Assert CheckNumerics CheckNumericsV2"),
    **_group("TF1 control flow: routes tensors into, around and out of loops and conditionals",
             "Switch Merge Enter Exit NextIteration LoopCond RefSwitch RefMerge RefEnter "
             "RefExit RefNextIteration RefSelect"),
    **_group("functional control flow / function call: its branches and bodies are library "
             "functions, each checked node by node",
             "If StatelessIf While StatelessWhile Case StatelessCase PartitionedCall "
             "StatefulPartitionedCall"),
    **_group("says which device type runs it (picks a function body): no input, no effect",
             "DeviceIndex"),
    **_group("elementwise math on its input tensors",
             "Abs Acos Acosh Add AddN AddV2 AccumulateNV2 Angle ApproximateEqual Asin Asinh "
             "Atan Atan2 Atanh BesselI0 BesselI0e BesselI1 BesselI1e BesselJ0 BesselJ1 BesselK0 "
             "BesselK0e BesselK1 BesselK1e BesselY0 BesselY1 Betainc BitwiseAnd BitwiseOr "
             "BitwiseXor Cast Ceil ClipByValue Complex ComplexAbs Conj Cos Cosh Dawsn Digamma "
             "Div DivNoNan Equal Erf Erfc Erfinv Exp Expint Expm1 Floor FloorDiv FloorMod "
             "FresnelCos FresnelSin Greater GreaterEqual Igamma IgammaGradA Igammac Imag Inv "
             "InvGrad Invert IsFinite IsInf IsNan LeftShift Less LessEqual Lgamma Log Log1p "
             "LogicalAnd LogicalNot LogicalOr Maximum Minimum Mod Mul MulNoNan Ndtri Neg "
             "NextAfter NotEqual Polygamma PopulationCount Pow Real RealDiv Reciprocal "
             "ReciprocalGrad RightShift Rint Round Rsqrt RsqrtGrad Select SelectV2 Sigmoid "
             "SigmoidGrad Sign Sin Sinh Spence Sqrt SqrtGrad Square SquaredDifference Sub Tan "
             "Tanh TanhGrad TruncateDiv TruncateMod Xdivy Xlog1py Xlogy Zeta"),
    **_group("reduction, scan or segment math on its input tensors",
             "All Any ArgMax ArgMin Cumprod Cumsum CumulativeLogsumexp EuclideanNorm Max Mean "
             "Min Prod Sum SegmentMax SegmentMaxV2 SegmentMean SegmentMin SegmentMinV2 "
             "SegmentProd SegmentProdV2 SegmentSum SegmentSumV2 UnsortedSegmentMax "
             "UnsortedSegmentMin UnsortedSegmentProd UnsortedSegmentSum Bincount DenseBincount "
             "HistogramFixedWidth Bucketize LowerBound UpperBound TopK TopKV2 NthElement InTopK "
             "InTopKV2 ApproxTopK"),
    **_group("linear algebra / FFT on its input tensors",
             "MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 SparseMatMul Einsum Cross "
             "Cholesky CholeskyGrad MatrixInverse MatrixDeterminant LogMatrixDeterminant "
             "MatrixSolve MatrixSolveLs MatrixTriangularSolve BandedTriangularSolve "
             "MatrixExponential MatrixLogarithm MatrixSquareRoot Qr Svd Eig SelfAdjointEig "
             "SelfAdjointEigV2 Lu TridiagonalMatMul TridiagonalSolve MatrixBandPart "
             "MatrixDiag MatrixDiagV2 MatrixDiagV3 MatrixDiagPart MatrixDiagPartV2 "
             "MatrixDiagPartV3 MatrixSetDiag MatrixSetDiagV2 MatrixSetDiagV3 BatchMatrixBandPart "
             "BatchMatrixDiag BatchMatrixDiagPart BatchMatrixSetDiag BatchMatrixDeterminant "
             "BatchMatrixInverse BatchMatrixSolve BatchMatrixSolveLs BatchMatrixTriangularSolve "
             "BatchCholesky BatchCholeskyGrad BatchSelfAdjointEig BatchSelfAdjointEigV2 "
             "BatchSvd FFT FFT2D FFT3D FFTND IFFT IFFT2D IFFT3D IFFTND RFFT RFFT2D RFFT3D "
             "RFFTND IRFFT IRFFT2D IRFFT3D IRFFTND BatchFFT BatchFFT2D BatchFFT3D BatchIFFT "
             "BatchIFFT2D BatchIFFT3D"),
    **_group("reshapes, slices, joins or indexes its input tensors",
             "Reshape Transpose ConjugateTranspose Shape ShapeN Size Rank Squeeze ExpandDims "
             "Slice StridedSlice StridedSliceGrad TensorStridedSliceUpdate Gather GatherV2 "
             "GatherNd ScatterNd ScatterNdNonAliasingAdd TensorScatterAdd TensorScatterMax "
             "TensorScatterMin TensorScatterSub TensorScatterUpdate Concat ConcatV2 ConcatOffset "
             "Pack Unpack Split SplitV Pad PadV2 MirrorPad MirrorPadGrad Tile TileGrad "
             "BroadcastTo BroadcastArgs BroadcastGradientArgs Fill ZerosLike OnesLike Range "
             "LinSpace OneHot Where Unique UniqueV2 UniqueWithCounts UniqueWithCountsV2 "
             "ListDiff Reverse ReverseV2 ReverseSequence Roll InvertPermutation UnravelIndex "
             "DynamicPartition DynamicStitch ParallelDynamicStitch Diag DiagPart Bitcast "
             "SpaceToBatch SpaceToBatchND BatchToSpace BatchToSpaceND SpaceToDepth DepthToSpace "
             "ExtractImagePatches ExtractVolumePatches DataFormatDimMap DataFormatVecPermute "
             "InplaceAdd InplaceSub InplaceUpdate DeepCopy Empty"),
    **_group("neural-network layer math (and its gradient) on its input tensors",
             "BiasAdd BiasAddV1 BiasAddGrad Conv Conv2D Conv2DBackpropFilter "
             "Conv2DBackpropFilterV2 Conv2DBackpropInput Conv2DBackpropInputV2 Conv3D "
             "Conv3DBackpropFilter Conv3DBackpropFilterV2 Conv3DBackpropInput "
             "Conv3DBackpropInputV2 DepthwiseConv2dNative DepthwiseConv2dNativeBackpropFilter "
             "DepthwiseConv2dNativeBackpropInput Dilation2D Dilation2DBackpropFilter "
             "Dilation2DBackpropInput FusedPadConv2D FusedResizeAndPadConv2D AvgPool AvgPool3D "
             "AvgPool3DGrad AvgPoolGrad MaxPool MaxPoolV2 MaxPool3D MaxPool3DGrad "
             "MaxPool3DGradGrad MaxPoolGrad MaxPoolGradV2 MaxPoolGradGrad MaxPoolGradGradV2 "
             "MaxPoolWithArgmax MaxPoolGradWithArgmax MaxPoolGradGradWithArgmax "
             "FractionalAvgPool FractionalAvgPoolGrad FractionalMaxPool FractionalMaxPoolGrad "
             "FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 FusedBatchNormGrad "
             "FusedBatchNormGradV2 FusedBatchNormGradV3 BatchNormWithGlobalNormalization "
             "BatchNormWithGlobalNormalizationGrad LRN LRNGrad L2Loss Relu Relu6 Relu6Grad "
             "ReluGrad Elu EluGrad Selu SeluGrad LeakyRelu LeakyReluGrad Softplus SoftplusGrad "
             "Softsign SoftsignGrad Softmax LogSoftmax SoftmaxCrossEntropyWithLogits "
             "SparseSoftmaxCrossEntropyWithLogits CTCLoss CTCLossV2 CTCGreedyDecoder "
             "CTCBeamSearchDecoder EditDistance CudnnRNN CudnnRNNV2 CudnnRNNV3 "
             "CudnnRNNBackprop CudnnRNNBackpropV2 CudnnRNNBackpropV3 CudnnRNNParamsSize "
             "CudnnRNNParamsToCanonical CudnnRNNParamsToCanonicalV2 CudnnRNNCanonicalToParams "
             "CudnnRNNCanonicalToParamsV2 BlockLSTM BlockLSTMV2 BlockLSTMGrad BlockLSTMGradV2 "
             "LSTMBlockCell LSTMBlockCellGrad GRUBlockCell GRUBlockCellGrad"),
    **_group("fake or real quantisation arithmetic on its input tensors",
             "FakeQuantWithMinMaxArgs FakeQuantWithMinMaxArgsGradient FakeQuantWithMinMaxVars "
             "FakeQuantWithMinMaxVarsGradient FakeQuantWithMinMaxVarsPerChannel "
             "FakeQuantWithMinMaxVarsPerChannelGradient QuantizeAndDequantize "
             "QuantizeAndDequantizeV2 QuantizeAndDequantizeV3 QuantizeAndDequantizeV4 "
             "QuantizeAndDequantizeV4Grad QuantizeV2 Dequantize QuantizeDownAndShrinkRange "
             "Requantize RequantizationRange QuantizedAdd QuantizedMul QuantizedMatMul "
             "QuantizedConv2D QuantizedRelu QuantizedRelu6 QuantizedReluX QuantizedReshape "
             "QuantizedBiasAdd QuantizedAvgPool QuantizedMaxPool QuantizedConcat "
             "QuantizedBatchNormWithGlobalNormalization QuantizedResizeBilinear"),
    **_group("image math, or decoding/encoding image or audio bytes held in a tensor (no file)",
             "ResizeArea ResizeBicubic ResizeBicubicGrad ResizeBilinear ResizeBilinearGrad "
             "ResizeNearestNeighbor ResizeNearestNeighborGrad ScaleAndTranslate "
             "ScaleAndTranslateGrad CropAndResize CropAndResizeGradBoxes CropAndResizeGradImage "
             "AdjustContrast AdjustContrastv2 AdjustHue AdjustSaturation HSVToRGB RGBToHSV "
             "DrawBoundingBoxes DrawBoundingBoxesV2 NonMaxSuppression NonMaxSuppressionV2 "
             "NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5 "
             "NonMaxSuppressionWithOverlaps CombinedNonMaxSuppression "
             "GenerateBoundingBoxProposals ExtractGlimpse ExtractGlimpseV2 "
             "ImageProjectiveTransformV2 ImageProjectiveTransformV3 DecodeJpeg "
             "DecodeAndCropJpeg DecodePng DecodeGif DecodeBmp DecodeImage DecodeWebP "
             "ExtractJpegShape EncodeJpeg EncodeJpegVariableQuality EncodePng DecodeWav "
             "EncodeWav AudioSpectrogram Mfcc"),
    **_group("string processing / parsing of bytes held in a tensor (no file)",
             "AsString StringJoin StringSplit StringSplitV2 StringStrip StringLower StringUpper "
             "StringLength Substr StringToNumber StringFormat StringNGrams ReduceJoin "
             "UnsortedSegmentJoin RegexReplace RegexFullMatch StaticRegexReplace "
             "StaticRegexFullMatch StringToHashBucket StringToHashBucketFast "
             "StringToHashBucketStrong Fingerprint DecodeBase64 EncodeBase64 DecodeRaw "
             "DecodePaddedRaw DecodeCSV DecodeCompressed DecodeJSONExample UnicodeDecode "
             "UnicodeDecodeWithOffsets UnicodeEncode UnicodeScript UnicodeTranscode "
             "ParseExample ParseExampleV2 ParseSingleExample ParseSequenceExample "
             "ParseSequenceExampleV2 ParseSingleSequenceExample ParseTensor SerializeTensor "
             "ShardedFilename ShardedFilespec"),
    **_group("sparse, ragged or set math on its input tensors",
             "SparseAdd SparseAddGrad SparseConcat SparseCross SparseCrossHashed SparseCrossV2 "
             "SparseDenseCwiseAdd SparseDenseCwiseDiv SparseDenseCwiseMul SparseFillEmptyRows "
             "SparseFillEmptyRowsGrad SparseReduceMax SparseReduceMaxSparse SparseReduceSum "
             "SparseReduceSumSparse SparseReorder SparseReshape SparseSegmentMean "
             "SparseSegmentMeanGrad SparseSegmentMeanGradV2 SparseSegmentMeanWithNumSegments "
             "SparseSegmentSqrtN SparseSegmentSqrtNGrad SparseSegmentSqrtNGradV2 "
             "SparseSegmentSqrtNWithNumSegments SparseSegmentSum SparseSegmentSumGrad "
             "SparseSegmentSumGradV2 SparseSegmentSumWithNumSegments SparseSlice SparseSliceGrad "
             "SparseSoftmax SparseSparseMaximum SparseSparseMinimum SparseSplit "
             "SparseTensorDenseAdd SparseTensorDenseMatMul SparseToDense SparseBincount "
             "SerializeSparse SerializeManySparse DeserializeSparse DeserializeManySparse "
             "RaggedGather RaggedRange RaggedTensorToSparse RaggedTensorToTensor "
             "RaggedTensorToVariant RaggedTensorFromVariant RaggedTensorToVariantGradient "
             "RaggedCross RaggedBincount RaggedFillEmptyRows RaggedFillEmptyRowsGrad "
             "DenseToDenseSetOperation DenseToSparseSetOperation SparseToSparseSetOperation "
             "SetSize"),
    **_group("tensor lists of one run (v2 control flow, while loops and their gradients)",
             "EmptyTensorList TensorListConcat TensorListConcatLists TensorListConcatV2 "
             "TensorListElementShape TensorListFromTensor TensorListGather TensorListGetItem "
             "TensorListLength TensorListPopBack TensorListPushBack TensorListPushBackBatch "
             "TensorListReserve TensorListResize TensorListScatter "
             "TensorListScatterIntoExistingList TensorListScatterV2 TensorListSetItem "
             "TensorListSplit TensorListStack"),
    **_group("optional values of one run (a functional If keeps its branches' intermediates "
             "in them for the gradient)",
             "OptionalFromValue OptionalNone OptionalGetValue OptionalHasValue"),
    **_group("tensor arrays and stacks living in memory for one run (TF1 while loops, "
             "dynamic RNNs and their gradients)",
             "TensorArrayV3 TensorArrayReadV3 TensorArrayWriteV3 TensorArrayGatherV3 "
             "TensorArrayScatterV3 TensorArrayConcatV3 TensorArraySplitV3 TensorArraySizeV3 "
             "TensorArrayCloseV3 TensorArrayGradV3 TensorArrayGradWithShape StackV2 "
             "StackPushV2 StackPopV2 StackCloseV2"),
    **_group("random numbers drawn in memory",
             "RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal "
             "ParameterizedTruncatedNormal RandomShuffle RandomGamma RandomGammaGrad "
             "RandomPoisson RandomPoissonV2 RandomCrop Multinomial NonDeterministicInts "
             "SampleDistortedBoundingBox SampleDistortedBoundingBoxV2 StatelessRandomUniform "
             "StatelessRandomUniformV2 StatelessRandomUniformInt StatelessRandomUniformIntV2 "
             "StatelessRandomUniformFullInt StatelessRandomUniformFullIntV2 "
             "StatelessRandomNormal StatelessRandomNormalV2 StatelessTruncatedNormal "
             "StatelessTruncatedNormalV2 StatelessMultinomial "
             "StatelessParameterizedTruncatedNormal StatelessRandomBinomial "
             "StatelessRandomGammaV2 StatelessRandomGammaV3 StatelessRandomPoisson "
             "StatelessRandomGetAlg StatelessRandomGetKeyCounter "
             "StatelessRandomGetKeyCounterAlg StatelessSampleDistortedBoundingBox "
             "StatelessShuffle RandomIndexShuffle StatefulUniform StatefulUniformInt "
             "StatefulUniformFullInt StatefulStandardNormal StatefulStandardNormalV2 "
             "StatefulTruncatedNormal StatefulRandomBinomial RngSkip RngReadAndSkip "
             "UniformCandidateSampler LogUniformCandidateSampler "
             "LearnedUnigramCandidateSampler ThreadUnsafeUnigramCandidateSampler "
             "AllCandidateSampler ComputeAccidentalHits"),
    **_group("creates or reads a variable of this graph, in memory",
             "VariableV2 Variable VarHandleOp ReadVariableOp VarIsInitializedOp "
             "IsVariableInitialized VariableShape ResourceGather ResourceGatherNd "
             "DisableCopyOnRead"),
    **_group("writes a variable of this graph, in memory",
             "Assign AssignAdd AssignSub AssignVariableOp AssignAddVariableOp "
             "AssignSubVariableOp CountUpTo ResourceCountUpTo StridedSliceAssign "
             "ResourceStridedSliceAssign ScatterAdd ScatterDiv ScatterMax ScatterMin ScatterMul "
             "ScatterSub ScatterUpdate ScatterNdAdd ScatterNdMax ScatterNdMin ScatterNdSub "
             "ScatterNdUpdate ResourceScatterAdd ResourceScatterDiv ResourceScatterMax "
             "ResourceScatterMin ResourceScatterMul ResourceScatterSub ResourceScatterUpdate "
             "ResourceScatterNdAdd ResourceScatterNdMax ResourceScatterNdMin "
             "ResourceScatterNdSub ResourceScatterNdUpdate"),
    **_group("an optimizer step: updates variables of this graph, in memory",
             "ApplyAdaMax ApplyAdadelta ApplyAdagrad ApplyAdagradDA ApplyAdagradV2 ApplyAdam "
             "ApplyAddSign ApplyCenteredRMSProp ApplyFtrl ApplyFtrlV2 ApplyGradientDescent "
             "ApplyMomentum ApplyPowerSign ApplyProximalAdagrad ApplyProximalGradientDescent "
             "ApplyRMSProp ResourceApplyAdaMax ResourceApplyAdadelta ResourceApplyAdagrad "
             "ResourceApplyAdagradDA ResourceApplyAdagradV2 ResourceApplyAdam "
             "ResourceApplyAdamWithAmsgrad ResourceApplyAddSign ResourceApplyCenteredRMSProp "
             "ResourceApplyFtrl ResourceApplyFtrlV2 ResourceApplyGradientDescent "
             "ResourceApplyKerasMomentum ResourceApplyMomentum ResourceApplyPowerSign "
             "ResourceApplyProximalAdagrad ResourceApplyProximalGradientDescent "
             "ResourceApplyRMSProp SparseApplyAdadelta SparseApplyAdagrad SparseApplyAdagradDA "
             "SparseApplyAdagradV2 SparseApplyCenteredRMSProp SparseApplyFtrl SparseApplyFtrlV2 "
             "SparseApplyMomentum SparseApplyProximalAdagrad SparseApplyProximalGradientDescent "
             "SparseApplyRMSProp ResourceSparseApplyAdadelta ResourceSparseApplyAdagrad "
             "ResourceSparseApplyAdagradDA ResourceSparseApplyAdagradV2 "
             "ResourceSparseApplyCenteredRMSProp ResourceSparseApplyFtrl "
             "ResourceSparseApplyFtrlV2 ResourceSparseApplyKerasMomentum "
             "ResourceSparseApplyMomentum ResourceSparseApplyProximalAdagrad "
             "ResourceSparseApplyProximalGradientDescent ResourceSparseApplyRMSProp"),
    **_group("serialises a Summary proto into a string tensor; writes nothing (a FileWriter "
             "in the caller's Python would)",
             "ScalarSummary HistogramSummary ImageSummary AudioSummary AudioSummaryV2 "
             "TensorSummary TensorSummaryV2 MergeSummary"),
    **_group("prints to the process's stderr / log (PrintV2's output_stream is checked: "
             "never a file)", "Print PrintV2"),
})

# ---------------------------------------------------------------------------
# Checkpoint ops: allowed only where proven to be the saver's own.

#: Checkpoint ops that read files: allowed only on the proven restore path.
RESTORE_OPS = frozenset({"RestoreV2", "Restore", "RestoreSlice"})
#: Checkpoint ops that write files: allowed only on a proven save path.
SAVE_OPS = frozenset({"SaveV2", "Save", "SaveSlices", "MergeV2Checkpoints"})
#: All checkpoint ops a saver is made of.
SAVER_OPS = RESTORE_OPS | SAVE_OPS
#: Assignments a restore writes the checkpoint's values with.
ASSIGN_OPS = frozenset({"Assign", "AssignVariableOp"})
#: Op types holding a variable of the graph.
VARIABLE_OPS = ("VariableV2", "Variable", "VarHandleOp")

#: The only ops the saver's restore op may run (in the graph and in the functions it calls).
RESTORE_PATH_OPS: Mapping[str, str] = MappingProxyType({
    **_group("a constant (the restore's tensor names and slices) or graph plumbing",
             "Const Identity IdentityN NoOp"),
    **_group("a variable of the graph the restore writes", " ".join(VARIABLE_OPS)),
    **_group("reads the checkpoint: proven to read the saver's own filename tensor, which "
             "loading feeds", " ".join(sorted(RESTORE_OPS))),
    **_group("writes a restored value: proven to target a variable of the graph",
             " ".join(sorted(ASSIGN_OPS))),
    **_group("calls a library function, held to these same rules",
             "PartitionedCall StatefulPartitionedCall"),
})

#: What may depend on a save-path checkpoint op (see the module docstring).
_SAVE_PATH_FOLLOWERS = frozenset({"Identity", "IdentityN", "NoOp", "Pack"}) | SAVE_OPS

# ---------------------------------------------------------------------------
# What the best-known refused ops do (for messages; the policy is ALLOWED_OPS).

_READS = "reads files"
_WRITES = "writes files"
_READS_WRITES = "reads and writes files"
_NETWORK = "talks to the network or other processes"
_PYTHON = "runs Python code"
_DEBUG = "debugger op: writes tensors to files or network addresses"
_HIDDEN = "runs a serialized graph this check cannot see"
_SUMMARY = "writes summary files"

#: Op types known to touch files, the network or Python, with what each does.
#: Not the policy -- anything off :data:`ALLOWED_OPS` is refused -- but what
#: a refusal says about the best-known ones.
UNSAFE_OPS: Mapping[str, str] = MappingProxyType({
    **_group(_READS, "ReadFile ImmutableConst Restore RestoreV2 RestoreSlice DTensorRestoreV2 "
             "LoadAndRemapMatrix GenerateVocabRemapping InitializeTableFromTextFile "
             "InitializeTableFromTextFileV2 WholeFileReader WholeFileReaderV2 TextLineReader "
             "TextLineReaderV2 FixedLengthRecordReader FixedLengthRecordReaderV2 TFRecordReader "
             "TFRecordReaderV2 LMDBReader IdentityReader IdentityReaderV2 ReaderRead "
             "ReaderReadV2 ReaderReadUpTo ReaderReadUpToV2 ReaderRestoreState "
             "ReaderRestoreStateV2 RecordInput TFRecordDataset TFRecordDatasetV2 "
             "TextLineDataset FixedLengthRecordDataset FixedLengthRecordDatasetV2 CSVDataset "
             "CSVDatasetV2 ExperimentalCSVDataset LMDBDataset ExperimentalLMDBDataset "
             "SqlDataset ExperimentalSqlDataset LoadDataset SnapshotDatasetReader "
             "SnapshotNestedDatasetReader SnapshotChunkDataset ListSnapshotChunksDataset "
             "FixedUnigramCandidateSampler Skipgram"),
    **_group(_WRITES, "WriteFile Save SaveV2 SaveSlices CalibrationStatisticsSaver SaveDataset "
             "SaveDatasetV2 DatasetToTFRecord ExperimentalDatasetToTFRecord DistributedSave"),
    **_group(_READS_WRITES, "MergeV2Checkpoints SnapshotDataset SnapshotDatasetV2 CacheDataset "
             "CacheDatasetV2"),
    **_group("lists files", "MatchingFiles MatchingFilesDataset ExperimentalMatchingFilesDataset"),
    **_group("configures file systems", "FileSystemSetConfiguration"),
    **_group(_HIDDEN, "DatasetFromGraph"),
    **_group(_SUMMARY, "CreateSummaryFileWriter CreateSummaryDbWriter SummaryWriter WriteSummary "
             "WriteScalarSummary WriteHistogramSummary WriteImageSummary WriteAudioSummary "
             "WriteGraphSummary WriteRawProtoSummary ImportEvent FlushSummaryWriter "
             "CloseSummaryWriter StatsAggregatorSetSummaryWriter"),
    **_group(_DEBUG, "DebugIdentity DebugIdentityV2 DebugIdentityV3 DebugNanCount "
             "DebugNumericSummary DebugNumericSummaryV2 DumpTensor"),
    **_group(_PYTHON, "PyFunc PyFuncStateless EagerPyFunc"),
    **_group(_NETWORK, "GcsConfigureCredentials GcsConfigureBlockCache BigQueryReader "
             "GenerateBigQueryReaderPartitions DataServiceDataset DataServiceDatasetV2 "
             "DataServiceDatasetV3 DataServiceDatasetV4 RegisterDataset RegisterDatasetV2 Rpc "
             "TryRpc RpcClient RpcCall RpcServer RpcServerStart RpcServerRegister RpcCheckStatus "
             "RpcGetValue DeleteRpcFutureResource RemoteCall Send Recv _Send _Recv _HostSend "
             "_HostRecv CollectiveReduce CollectiveReduceV2 CollectiveReduceV3 CollectiveGather "
             "CollectiveGatherV2 CollectiveBcastSend CollectiveBcastSendV2 CollectiveBcastRecv "
             "CollectiveBcastRecvV2 CollectivePermute CollectiveAllToAllV2 CollectiveAllToAllV3 "
             "CollectiveReduceScatterV2 CollectiveInitializeCommunicator "
             "CollectiveAssignGroupV2"),
    **_group("aborts the process", "Abort"),
})

_NOT_LISTED = "not on the allow-list of pure-computation ops (guard.ALLOWED_OPS)"


def _string_attr(node: Any, name: str, default: str) -> str:
    value = node.attr[name].s if name in node.attr else b""
    return value.decode("utf-8", "replace") if value else default


def _descriptor_from_file(node: Any) -> bool:
    source = _string_attr(node, "descriptor_source", "local://")
    return source != "local://" and not source.startswith("bytes://")


def _prints_to_file(node: Any) -> bool:
    stream = _string_attr(node, "output_stream", "stderr")
    return stream not in ("stderr", "stdout", "log(info)", "log(warning)", "log(error)")


def _debug_ops(node: Any) -> bool:
    return bool(node.attr["debug_ops_spec"].list.s) if "debug_ops_spec" in node.attr else False


#: Op types that are unsafe with some attribute values: the test, and what it
#: means. Applied to allowed ops (by default or by the caller's ``allow_ops``).
CONDITIONALLY_UNSAFE_OPS: Mapping[str, tuple[Callable[[Any], bool], str]] = MappingProxyType({
    "PrintV2": (_prints_to_file, "prints to a file (output_stream other than stderr, "
                "stdout or the log)"),
    "DecodeProtoV2": (_descriptor_from_file, "reads a proto descriptor file"),
    "EncodeProto": (_descriptor_from_file, "reads a proto descriptor file"),
    "Copy": (_debug_ops, _DEBUG),
    "CopyHost": (_debug_ops, _DEBUG),
})

# SavedModel keys of the ops its loader runs (tensorflow.saved_model constants).
INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"
INIT_OP_COLLECTIONS = ("saved_model_main_op", "legacy_init_op")
PLACEHOLDER_OPS = ("Placeholder", "PlaceholderWithDefault", "PlaceholderV2")
_DT_STRING = 7  # tensorflow.core.framework.types_pb2.DT_STRING
_HANDLE_DTYPES = {20: "resource", 21: "variant"}  # DT_RESOURCE, DT_VARIANT
_VARIABLE_COLLECTIONS_FIELDS = ("variable_name", "initializer_name", "snapshot_name",
                                "initial_value_name")


def unsafe_reason(node: Any, allow_ops: Iterable[str] = ()) -> str | None:
    """Why ``node`` (a NodeDef) may not run in an untrusted graph, or ``None``.

    Judges the op type and attributes only; checkpoint ops always get a
    reason here (whether a saver may run them is :func:`find_unsafe_ops`'s proof).
    """
    if node.op not in ALLOWED_OPS and node.op not in allow_ops:
        return UNSAFE_OPS.get(node.op, _NOT_LISTED)
    return _attribute_reason(node)


def _attribute_reason(node: Any) -> str | None:
    if node.op in CONDITIONALLY_UNSAFE_OPS:
        test, what = CONDITIONALLY_UNSAFE_OPS[node.op]
        if test(node):
            return what
    for key, value in node.attr.items():
        tensors = [value.tensor] if value.HasField("tensor") else list(value.list.tensor)
        for tensor in tensors:
            if tensor.dtype in _HANDLE_DTYPES:
                return (f"attribute {key!r} holds a {_HANDLE_DTYPES[tensor.dtype]} handle, "
                        "which can name a resource")
    return None


# ---------------------------------------------------------------------------
# Findings and the error.


class Finding(NamedTuple):
    """One refused node: its name, op type, why, and how a run reaches it."""

    name: str  #: ``"node"``, or ``"node (in function fn)"`` inside a library function
    op: str
    reason: str
    path: str = ""  #: for a function's node: the call path from a graph node


class UnsafeGraphError(ValueError):
    """A model's graph holds ops that are not proven pure computation.

    Attributes:
      offending: ``[(node name, op type), ...]``; a node inside a function of
        the graph's library is named ``"NODE (in function FN)"``.
      findings: the same as :class:`Finding` tuples, with reasons and call paths.
      source: the path that was being loaded (or what was about to run).
    """

    def __init__(self, offending: Iterable[Any], source: str = "", *,
                 action: str = "load this graph") -> None:
        self.findings = [f if isinstance(f, Finding) else
                         Finding(f[0], f[1], _reason_of(f[1])) for f in offending]
        self.offending = [(f.name, f.op) for f in self.findings]
        self.source = source
        shown = self.findings[:20]
        lines = "\n".join(
            f"  {f.name}  ({f.op}: {f.reason})" + (f"\n      reached by: {f.path}" if f.path
                                                   else "") for f in shown)
        more = (f"\n  ... and {len(self.findings) - len(shown)} more"
                if len(self.findings) > len(shown) else "")
        where = f"{source}: " if source else ""
        super().__init__(
            f"{where}refusing to {action}: it holds {len(self.findings)} op(s) not proven to be "
            f"pure computation (they could touch the file system or the network or run "
            f"Python), and none of them was run:\n{lines}{more}\n"
            "Allow op types you have checked with allow_ops=(...), or pass "
            "allow_unsafe_ops=True only if you trust where this model came from."
        )


def _reason_of(op: str) -> str:
    if op == "Lambda":
        return "a Keras Lambda layer holding Python bytecode"
    return UNSAFE_OPS.get(op, _NOT_LISTED)


def check_allow_ops(allow_ops: Any) -> frozenset[str]:
    """``allow_ops`` as a set of op type names; TypeError/ValueError naming it otherwise.

    Each name must be an op type TensorFlow registers (a typo would allow nothing).
    """
    if isinstance(allow_ops, str | bytes) or not isinstance(allow_ops, Iterable):
        raise TypeError(f"allow_ops: expected a tuple of op type names, got {allow_ops!r}")
    names = list(allow_ops)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise TypeError(f"allow_ops: expected op type names (str), got {bad[0]!r}")
    from tensorflow.python.framework import op_def_registry

    unknown = [n for n in names if op_def_registry.get(n) is None]
    if unknown:
        raise ValueError(f"allow_ops: {unknown[0]!r} is not an op type this TensorFlow "
                         "registers (names are case-sensitive, e.g. 'LookupTableFindV2')")
    return frozenset(names)


# ---------------------------------------------------------------------------
# Graphs and function bodies.


def node_name(ref: str) -> str:
    """The node a NodeDef input refers to (``^ctrl``, ``name:1``, ``fn_node:out:0`` -> name)."""
    return ref.lstrip("^").split(":")[0]


def _output_index(ref: str) -> int:
    """The output index a data input refers to (``n`` -> 0, ``n:2`` / ``n:out:2`` -> 2)."""
    parts = ref.split(":")
    try:
        return int(parts[-1]) if len(parts) > 1 else 0
    except ValueError:
        return 0


def _functions_referenced(node: Any) -> list[tuple[str, str]]:
    """``(attribute, function name)`` of each function ``node`` calls through its attributes."""
    found = []
    for key, value in node.attr.items():
        if value.HasField("func"):
            found.append((key, value.func.name))
        elif value.HasField("list"):
            found.extend((key, f.name) for f in value.list.func)
    return found


class _Body:
    """The nodes of a graph or of one function body, with their edges."""

    def __init__(self, nodes: Iterable[Any], fname: str | None = None,
                 args: Iterable[str] = ()) -> None:
        self.fname = fname
        self.nodes = {node.name: node for node in nodes}
        self.args = list(args)
        self.consumers: dict[str, set[str]] = defaultdict(set)
        self.producers: dict[str, list[str]] = {}
        for node in self.nodes.values():
            producers = [node_name(ref) for ref in node.input]
            self.producers[node.name] = [p for p in producers if p in self.nodes]
            for producer in self.producers[node.name]:
                self.consumers[producer].add(node.name)

    def label(self, name: str) -> str:
        return name if self.fname is None else f"{name} (in function {self.fname})"

    def data_refs(self, name: str) -> list[str]:
        return [r for r in self.nodes[name].input if not r.startswith("^")]

    def source(self, ref: str) -> tuple[str, str, int]:
        """Where a data input comes from, through identities: ``(kind, name, output)``.

        ``kind`` is ``"node"`` or ``"arg"`` (a function argument), or
        ``"missing"`` for a reference to nothing.
        """
        seen = set()
        while True:
            name, index = node_name(ref), _output_index(ref)
            if name not in self.nodes:
                return ("arg" if name in self.args else "missing", name, index)
            node = self.nodes[name]
            refs = self.data_refs(name)
            if node.op in ("Identity", "RefIdentity") and refs and name not in seen:
                ref = refs[0]
            elif node.op == "IdentityN" and index < len(refs) and name not in seen:
                ref = refs[index]
            else:
                return ("node", name, index)
            seen.add(name)

    def closure(self, roots: Iterable[str], edges: Mapping[str, Iterable[str]]) -> set[str]:
        seen = {r for r in roots if r in self.nodes}
        queue = deque(seen)
        while queue:
            for nxt in edges.get(queue.popleft(), ()):
                if nxt in self.nodes and nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen

    def descendants(self, roots: Iterable[str]) -> set[str]:
        """``roots`` and every node that depends on them (data or control)."""
        return self.closure(roots, self.consumers)

    def ancestors(self, roots: Iterable[str]) -> set[str]:
        return self.closure(roots, self.producers)

    def run_set(self, roots: Iterable[str], fed: set[tuple[str, int]]) -> set[str]:
        """The nodes ``session.run`` of ``roots`` runs when the tensors ``fed`` are fed.

        Follows every control input and every data input except those
        reading a fed tensor (TensorFlow prunes a fed tensor's producer).
        """
        seen = {r for r in roots if r in self.nodes}
        queue = deque(seen)
        while queue:
            name = queue.popleft()
            for ref in self.nodes[name].input:
                producer = node_name(ref)
                if not ref.startswith("^") and (producer, _output_index(ref)) in fed:
                    continue
                if producer in self.nodes and producer not in seen:
                    seen.add(producer)
                    queue.append(producer)
        return seen


def _tensor(name: str) -> tuple[str, int]:
    return node_name(name), _output_index(name)


#: Kinds of a value bound to a function argument on the restore / init path.
_FILENAME, _VARIABLE, _OTHER = "the saver's filename", "a variable of the graph", "other"


class _Checker:
    """One run of :func:`find_unsafe_ops` over a graph and its library."""

    def __init__(self, gdef: Any, meta: Any, saver_def: Any, allow_ops: frozenset[str]) -> None:
        from tensorflow.python.framework import op_def_registry

        self.allow = allow_ops
        self.graph = _Body(gdef.node)
        self.functions = {f.signature.name: f for f in gdef.library.function}
        self.bodies = {name: _Body(f.node_def, name, [a.name for a in f.signature.input_arg])
                       for name, f in self.functions.items()}
        self.gradients = list(gdef.library.gradient)
        self.findings: dict[tuple[str | None, str], Finding] = {}
        self.registered = op_def_registry.get
        self.meta = meta
        self.saver_def = saver_def
        self._call_paths()

    # -- reporting --------------------------------------------------------------

    def refuse(self, body: _Body, name: str, reason: str, op: str | None = None) -> None:
        key = (body.fname, name)
        if key not in self.findings:
            path = self.paths.get(body.fname, "") if body.fname is not None else ""
            op = op if op is not None else body.nodes[name].op
            self.findings[key] = Finding(body.label(name), op, reason, path)

    # -- calls ---------------------------------------------------------------------

    def callees(self, node: Any) -> list[tuple[str, str]]:
        """``(how, name)`` of each function a node calls (its op, or function attributes)."""
        calls = [("op", node.op)] if node.op in self.functions else []
        return calls + _functions_referenced(node)

    def _call_paths(self) -> None:
        """For each function: the graph nodes that reach it, and one call path for messages."""
        self.graph_callers: dict[str, set[str]] = defaultdict(set)
        self.paths: dict[str | None, str] = {}
        queue: deque[str] = deque()
        for node in self.graph.nodes.values():
            for _, fname in self.callees(node):
                if fname in self.functions:
                    self.graph_callers[fname].add(node.name)
                    if fname not in self.paths:
                        self.paths[fname] = f"graph node {node.name!r} ({node.op}) -> {fname}"
                        queue.append(fname)
        calls = {fname: {callee for n in body.nodes.values() for _, callee in self.callees(n)
                         if callee in self.functions}
                 for fname, body in self.bodies.items()}
        while queue:
            fname = queue.popleft()
            for callee in calls[fname]:
                if callee not in self.paths:
                    self.paths[callee] = f"{self.paths[fname]} -> {callee}"
                    queue.append(callee)
        changed = True
        while changed:  # graph callers propagate down the call graph to a fixed point
            changed = False
            for fname, callees in calls.items():
                for callee in callees:
                    if not self.graph_callers[fname] <= self.graph_callers[callee]:
                        self.graph_callers[callee] |= self.graph_callers[fname]
                        changed = True
        for fname in self.functions:
            self.paths.setdefault(fname, f"{fname} (no graph node calls it)")
        self.holds_saver_ops = {
            fname for fname, body in self.bodies.items()
            if any(n.op in SAVER_OPS for n in body.nodes.values())}
        reach = {fname: self._reachable(fname, calls) for fname in self.functions}
        self.calls_saver_ops = {fname for fname in self.functions
                                if reach[fname] & self.holds_saver_ops}

    def _reachable(self, fname: str, calls: Mapping[str, set[str]]) -> set[str]:
        seen, queue = {fname}, deque([fname])
        while queue:
            for callee in calls[queue.popleft()]:
                if callee not in seen:
                    seen.add(callee)
                    queue.append(callee)
        return seen

    # -- every node: the allow-list --------------------------------------------------

    def check_node(self, body: _Body, node: Any) -> None:
        """The allow-list, attributes and calls of one node (checkpoint ops judged elsewhere)."""
        if node.op in self.functions:
            if self.registered(node.op) is not None:
                self.refuse(body, node.name, f"calls function {node.op!r}, named like an op "
                            "type (which would run instead)")
            reason = _attribute_reason(node)
        elif node.op in SAVER_OPS and node.op not in self.allow:
            return
        else:
            reason = unsafe_reason(node, self.allow)
        if reason is not None:
            self.refuse(body, node.name, reason)
        for key, fname in _functions_referenced(node):
            if fname not in self.functions:
                self.refuse(body, node.name, f"attribute {key!r} calls {fname!r}, which is not "
                            "a function of the graph's library")

    def check_all_nodes(self) -> None:
        for node in self.graph.nodes.values():
            self.check_node(self.graph, node)
        for fname in sorted(self.functions):
            for node in self.bodies[fname].nodes.values():
                self.check_node(self.bodies[fname], node)
        for gradient in self.gradients:
            for fname in (gradient.function_name, gradient.gradient_func):
                if fname not in self.functions:
                    self.findings[(None, f"gradient {fname}")] = Finding(
                        f"gradient of {gradient.function_name}", "GradientDef",
                        f"names {fname!r}, which is not a function of the graph's library")

    # -- what the loader runs ----------------------------------------------------------

    def roots_and_exposed(self) -> None:
        """Nodes the loader, the model's users and collections run; nodes computed from inputs."""
        meta, saver_def, graph = self.meta, self.saver_def, self.graph
        self.restore_op = node_name(saver_def.restore_op_name) if saver_def is not None else None
        self.filename = _tensor(saver_def.filename_tensor_name) if saver_def is not None \
            else None
        self.init_ops: set[str] = set()
        self.asset_tensors: set[tuple[str, int]] = set()
        named: set[str] = set()
        signature_nodes: set[str] = set()
        if meta is not None:
            from tensorflow.core.framework import variable_pb2

            for key, signature in meta.signature_def.items():
                infos = list(signature.inputs.values()) + list(signature.outputs.values())
                names = {node_name(i.name) for i in infos if i.name}
                for info in infos:
                    if info.HasField("coo_sparse"):
                        coo = info.coo_sparse
                        names |= {node_name(t) for t in (coo.values_tensor_name,
                                                         coo.indices_tensor_name,
                                                         coo.dense_shape_tensor_name)}
                if key == INIT_OP_SIGNATURE_KEY:
                    self.init_ops |= names
                else:
                    signature_nodes |= names
            for key in INIT_OP_COLLECTIONS:
                if key in meta.collection_def:
                    self.init_ops.update(node_name(n) for n in
                                         meta.collection_def[key].node_list.value)
            self.asset_tensors = {_tensor(a.tensor_info.name) for a in meta.asset_file_def}
            for key, collection in meta.collection_def.items():
                named.update(node_name(n) for n in collection.node_list.value)
                if not (key.endswith("variables") or key == "global_step"):
                    continue  # other protos (savers, control flow contexts) name no roots
                for raw in collection.bytes_list.value:
                    variable = variable_pb2.VariableDef()
                    try:
                        variable.ParseFromString(raw)
                    except Exception:  # noqa: BLE001 - not a VariableDef: names nothing
                        continue
                    named.update(node_name(getattr(variable, f)) for f in
                                 _VARIABLE_COLLECTIONS_FIELDS if getattr(variable, f))
        inputs = [n for n, node in graph.nodes.items()
                  if node.op in PLACEHOLDER_OPS and not self._is_filename(n)]
        self.exposed = graph.descendants(inputs) | signature_nodes
        self.named = (named | signature_nodes | self.init_ops
                      | ({self.restore_op} if self.restore_op else set()))
        # Assignments that are not a restore's (variable initializers, updates) are run too.
        self.named |= {n for n, node in graph.nodes.items() if node.op in ASSIGN_OPS
                       and not self._restored_value(graph, n)}

    def _is_filename(self, name: str) -> bool:
        """A saver's filename placeholder: a string only checkpoint plumbing uses."""
        if self.filename is not None and name == self.filename[0]:
            return True
        node = self.graph.nodes[name]
        is_string = "dtype" in node.attr and node.attr["dtype"].type == _DT_STRING
        plumbing = SAVER_OPS | {"Identity", "NoOp", "Pack", "ShardedFilename", "StringJoin",
                                "StaticRegexFullMatch", "Select", "PlaceholderWithDefault"}
        below = self.graph.descendants([name]) - {name}
        return is_string and all(
            self.graph.nodes[n].op in plumbing or self._calls_saver(n)
            or (self.graph.nodes[n].op in ASSIGN_OPS and self._restored_value(self.graph, n))
            for n in below)

    def _calls_saver(self, name: str) -> bool:
        """A graph node calling a function that (through its callees) holds checkpoint ops."""
        return any(fname in self.calls_saver_ops
                   for _, fname in self.callees(self.graph.nodes[name]))

    def _restored_value(self, body: _Body, name: str) -> bool:
        """An assignment whose value is a restore op's output (through identities)."""
        refs = body.data_refs(name)
        if len(refs) < 2:
            return False
        kind, source, _ = body.source(refs[1])
        return kind == "node" and body.nodes[source].op in RESTORE_OPS

    # -- the restore path ------------------------------------------------------------------

    def check_restore_path(self) -> set[str]:
        """Proves what the saver's restore op runs; returns the graph nodes it runs."""
        if self.restore_op is None:
            return set()
        graph = self.graph
        if self.restore_op not in graph.nodes:
            return set()
        fed = {self.filename} if self.filename is not None else set()
        run = graph.run_set([self.restore_op], fed)
        for name in sorted(run):
            node = graph.nodes[name]
            if node.op not in RESTORE_PATH_OPS and node.op not in self.allow:
                self.refuse(graph, name, f"{_reason_of(node.op)}; runs on the restore path, "
                            "where only saver plumbing may run"
                            if node.op in UNSAFE_OPS else "runs on the restore path, where "
                            "only saver plumbing may run (guard.RESTORE_PATH_OPS)")
                continue
            if name in self.exposed:
                self.refuse(graph, name, "the restore op runs a node computed from the model's "
                            "inputs or outputs")
            if node.op in RESTORE_OPS:
                self._check_graph_restore(name, run)
            elif node.op in ASSIGN_OPS:
                self._check_target(graph, name, lambda kind, src: kind == "node" and
                                   graph.nodes[src].op in VARIABLE_OPS)
            if self._calls_saver(name):
                below = graph.descendants([name])
                feeds = (below - run) | (below & self.exposed)
                if feeds:
                    self.refuse(graph, name, "calls a function holding checkpoint ops and also "
                                f"feeds the model ({sorted(feeds)[0]!r}): running the model "
                                "would run them")
            for _, fname in self.callees(node):
                if fname in self.functions:
                    bindings = [self._graph_kind(ref, fed) for ref in graph.data_refs(name)]
                    self._check_body(fname, bindings, "restore", set())
        return run

    def _graph_kind(self, ref: str, fed: set[tuple[str, int]]) -> str:
        kind, source, index = self.graph.source(ref)
        if kind == "node" and (source, index) in fed:
            return _FILENAME
        if kind == "node" and self.graph.nodes[source].op in VARIABLE_OPS:
            return _VARIABLE
        return _OTHER

    def _check_graph_restore(self, name: str, run: set[str]) -> None:
        graph = self.graph
        refs = graph.data_refs(name)
        kind, source, index = graph.source(refs[0]) if refs else ("missing", "", 0)
        if (kind, (source, index)) != ("node", self.filename):
            self.refuse(graph, name, "a restore op on the restore path that does not read the "
                        "saver's filename tensor (it reads "
                        f"{source or 'nothing'!r})")
            return
        below = graph.descendants([name])
        feeds = (below - run) | (below & self.exposed)
        if feeds:
            self.refuse(graph, name, "a restore op that also feeds the model "
                        f"({sorted(feeds)[0]!r}): running the model would read a file")

    def _check_target(self, body: _Body, name: str, is_variable: Callable[[str, str], bool]
                      ) -> None:
        refs = body.data_refs(name)
        kind, source, _ = body.source(refs[0]) if refs else ("missing", "", 0)
        if not is_variable(kind, source):
            self.refuse(body, name, f"an assignment whose target ({source or 'nothing'!r}) is "
                        "not a variable of the graph")

    def _check_body(self, fname: str, bindings: list[str], mode: str,
                    seen: set[tuple[str, tuple[str, ...]]]) -> None:
        """Holds a function called on the restore (``mode="restore"``) or init path to its rules.

        ``bindings``: the kind of value each argument receives from the caller.
        Every node of a called function runs (TensorFlow keeps all its stateful ops).
        """
        key = (fname, tuple(bindings))
        if key in seen:
            return
        seen.add(key)
        body = self.bodies[fname]
        args = dict(zip(body.args, bindings))

        def kind_of(ref: str) -> str:
            kind, source, _ = body.source(ref)
            if kind == "arg":
                return args.get(source, _OTHER)
            if kind == "node" and body.nodes[source].op in VARIABLE_OPS and mode == "init":
                return _VARIABLE
            return _OTHER

        for name in sorted(body.nodes):
            node = body.nodes[name]
            if mode == "restore" and node.op not in RESTORE_PATH_OPS \
                    and node.op not in self.allow and node.op not in self.functions:
                self.refuse(body, name, "runs on the restore path, where only saver plumbing "
                            "may run (guard.RESTORE_PATH_OPS)")
                continue
            if mode == "init" and node.op in SAVER_OPS and node.op not in self.allow:
                self.refuse(body, name, "a checkpoint op on the SavedModel's init path")
                continue
            refs = body.data_refs(name)
            if node.op in RESTORE_OPS and (not refs or kind_of(refs[0]) != _FILENAME):
                self.refuse(body, name, "a restore op that does not read the saver's filename "
                            "tensor")
            elif node.op in ASSIGN_OPS and (not refs or kind_of(refs[0]) != _VARIABLE):
                self.refuse(body, name, "an assignment whose target is not a variable of the "
                            "graph")
            for _, callee in self.callees(node):
                if callee in self.functions:
                    self._check_body(callee, [kind_of(r) for r in refs], mode, seen)

    # -- the init op ---------------------------------------------------------------------

    def check_init_path(self) -> set[str]:
        graph = self.graph
        roots = [n for n in self.init_ops if n in graph.nodes]
        run = graph.run_set(roots, self.asset_tensors)
        for name in sorted(run):
            node = graph.nodes[name]
            if node.op in SAVER_OPS and node.op not in self.allow:
                self.refuse(graph, name, f"{_reason_of(node.op)}; a checkpoint op on the "
                            "SavedModel's init path")
            elif node.op in ASSIGN_OPS:
                self._check_target(graph, name, lambda kind, src: kind == "node" and
                                   graph.nodes[src].op in VARIABLE_OPS)
            for _, fname in self.callees(node):
                if fname in self.functions:
                    bindings = [self._graph_kind(ref, set()) for ref in graph.data_refs(name)]
                    self._check_body(fname, bindings, "init", set())
        return run

    # -- save paths and other savers ---------------------------------------------------------

    def inert(self, name: str, loaded: set[str]) -> str | None:
        """Why running the model or its loader could run graph node ``name``; ``None`` if never.

        Only saver plumbing may depend on it: identities, no-ops, packs,
        other save ops and assignments of restored values; nothing the model,
        its signatures, collections, initializers or loader runs.
        """
        graph = self.graph
        if name in loaded:
            return "loading runs it"
        below = graph.descendants([name]) - {name}
        for other in sorted(below | {name}):
            if other in self.named or other in self.exposed:
                return f"{other!r}, which the model or its loader runs, depends on it"
        for other in sorted(below):
            op = graph.nodes[other].op
            if op not in _SAVE_PATH_FOLLOWERS and not (
                    op in ASSIGN_OPS and self._restored_value(graph, other)):
                return f"{other!r} ({op}) depends on it"
        return None

    def check_saver_ops(self, restore_run: set[str], init_run: set[str]) -> None:
        graph = self.graph
        loaded = restore_run | init_run
        for name, node in graph.nodes.items():
            if node.op not in SAVER_OPS or node.op in self.allow or name in restore_run \
                    or name in init_run:
                continue  # the restore / init proofs judged those
            why = self.inert(name, loaded) if self.saver_def is not None else \
                "the graph has no saver (a frozen graph needs no checkpoint op)"
            if why is not None:
                self.refuse(graph, name, f"{UNSAFE_OPS[node.op]}, and {why}")
        for fname in sorted(self.holds_saver_ops):
            body = self.bodies[fname]
            callers = self.graph_callers.get(fname, set())
            on_restore = {c for c in callers if c in restore_run}
            problems = []
            if self.saver_def is None:
                problems.append("the graph has no saver")
            if not callers:
                problems.append("no graph node calls its function")
            for caller in sorted(callers - on_restore):
                why = self.inert(caller, loaded)
                if why is not None:
                    problems.append(f"its function is called by graph node {caller!r} and {why}")
            for name, node in body.nodes.items():
                if node.op not in SAVER_OPS or node.op in self.allow:
                    continue
                if on_restore and node.op in SAVE_OPS:
                    self.refuse(body, name, f"{UNSAFE_OPS[node.op]}, on the restore path")
                elif problems:
                    self.refuse(body, name, f"{UNSAFE_OPS[node.op]}, and {problems[0]}")

    def run(self) -> list[Finding]:
        self.roots_and_exposed()
        self.check_all_nodes()
        restore_run = self.check_restore_path()
        init_run = self.check_init_path()
        self.check_saver_ops(restore_run, init_run)
        return list(self.findings.values())


def find_unsafe_ops(graph_def: Any, *, allowed_restore: Any = None,
                    allow_ops: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The nodes of a graph that are not proven safe to load and run (see the module docstring).

    Looks at every node of the GraphDef and of every function in its library;
    nothing is imported or run.

    Args:
      graph_def: a ``GraphDef``, or a ``MetaGraphDef`` (whose ``saver_def``,
        signatures, collections and SavedModel init ops are used).
      allowed_restore: ``None`` (default): the MetaGraphDef's own
        ``saver_def`` is the saver whose restore is proven. A ``SaverDef``:
        use it instead. ``()``: no saver (a frozen graph): every checkpoint op
        is refused.
      allow_ops: op types to allow besides :data:`ALLOWED_OPS` (checked by
        :func:`check_allow_ops`).

    Returns:
      ``[(node name, op type), ...]`` of the refused nodes, graph nodes first;
      empty if the graph is safe to load. A node inside library function
      ``fn`` is named ``"node (in function fn)"``. :func:`explain_unsafe_ops`
      gives the reasons and call paths too.
    """
    return [(f.name, f.op) for f in explain_unsafe_ops(
        graph_def, allowed_restore=allowed_restore, allow_ops=allow_ops)]


def explain_unsafe_ops(graph_def: Any, *, allowed_restore: Any = None,
                       allow_ops: Iterable[str] = ()) -> list[Finding]:
    """:func:`find_unsafe_ops` as :class:`Finding` tuples (name, op, reason, call path)."""
    meta = graph_def if hasattr(graph_def, "graph_def") and hasattr(graph_def, "saver_def") \
        else None
    gdef = meta.graph_def if meta is not None else graph_def
    if not hasattr(gdef, "node") or not hasattr(gdef, "library"):
        raise TypeError(
            f"graph_def: expected a GraphDef or MetaGraphDef, got {type(graph_def).__name__}")
    allow = check_allow_ops(allow_ops)
    if allowed_restore is None:
        saver_def = meta.saver_def if meta is not None and meta.HasField("saver_def") else None
    elif hasattr(allowed_restore, "restore_op_name"):
        saver_def = allowed_restore
    elif isinstance(allowed_restore, Iterable) and not isinstance(allowed_restore, str | bytes) \
            and not list(allowed_restore):
        saver_def = None
    else:
        raise TypeError("allowed_restore: expected None, a SaverDef or () (no saver), got "
                        f"{allowed_restore!r}")
    checker = _Checker(gdef, meta, saver_def, allow)
    found = checker.run()
    order = {name: i for i, name in enumerate(checker.graph.nodes)}
    graph_found = sorted((f for f in found if " (in function " not in f.name),
                         key=lambda f: order.get(f.name, len(order)))
    return graph_found + [f for f in found if " (in function " in f.name]


def check_graph(graph_def: Any, source: str = "", *, allowed_restore: Any = None,
                allow_ops: Iterable[str] = ()) -> None:
    """Raises :class:`UnsafeGraphError` if :func:`find_unsafe_ops` refuses anything."""
    findings = explain_unsafe_ops(graph_def, allowed_restore=allowed_restore,
                                  allow_ops=allow_ops)
    if findings:
        raise UnsafeGraphError(findings, source)


# ---------------------------------------------------------------------------
# What library code runs on a loaded graph.


def run_closure(fetches: Iterable[Any], feeds: Iterable[Any] = ()) -> list[Any]:
    """The ``tf.Operation`` s ``session.run(fetches, {feeds: ...})`` runs, in no set order.

    Follows every control input and every input except fed tensors (whose
    producers TensorFlow prunes).
    """
    return ancestor_ops(fetches, feeds)


def find_unsafe_run(graph: Any, fetches: Iterable[Any], feeds: Iterable[Any] = (), *,
                    allow_ops: Iterable[str] = ()) -> list[Finding]:
    """What a ``session.run`` of ``fetches`` (``feeds`` fed) would run that is not allowed.

    Every op it runs, and every node of every library function those ops
    call, must be on :data:`ALLOWED_OPS` (or ``allow_ops``) with safe
    attributes; no exception for checkpoint ops. Nothing is run.
    """
    allow = check_allow_ops(allow_ops)
    ops = run_closure(fetches, feeds)
    found: list[Finding] = []
    library = None
    called: deque[tuple[str, str]] = deque()
    for op in sorted(ops, key=lambda o: o.name):
        node = op.node_def
        calls = _functions_referenced(node)
        is_call = False
        if calls or node.op not in ALLOWED_OPS:
            library = library if library is not None else {
                f.signature.name: f for f in graph.as_graph_def().library.function}
            is_call = node.op in library
        reason = _attribute_reason(node) if is_call else unsafe_reason(node, allow)
        if reason is not None:
            found.append(Finding(op.name, node.op, reason))
        for fname in ([node.op] if is_call else []) + [f for _, f in calls]:
            called.append((fname, f"{op.name!r} ({node.op}) -> {fname}"))
    seen: set[str] = set()
    while called:
        fname, path = called.popleft()
        if fname in seen:
            continue
        seen.add(fname)
        if library is None or fname not in library:
            found.append(Finding(f"call of {fname}", "function", "not a function of the "
                                 "graph's library", path))
            continue
        for node in library[fname].node_def:
            is_call = node.op in library
            reason = _attribute_reason(node) if is_call else unsafe_reason(node, allow)
            if reason is not None:
                found.append(Finding(f"{node.name} (in function {fname})", node.op, reason,
                                     path))
            for callee in ([node.op] if is_call else []) + \
                    [f for _, f in _functions_referenced(node)]:
                called.append((callee, f"{path} -> {callee}"))
    return found


def check_run(graph: Any, fetches: Iterable[Any], feeds: Iterable[Any] = (), *,
              allow_ops: Iterable[str] = (), what: str = "run these ops") -> None:
    """Raises :class:`UnsafeGraphError` unless :func:`find_unsafe_run` finds nothing."""
    found = find_unsafe_run(graph, fetches, feeds, allow_ops=allow_ops)
    if found:
        raise UnsafeGraphError(found, action=what)
